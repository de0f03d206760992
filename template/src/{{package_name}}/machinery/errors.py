"""What the command line reports in one line, with an exit status.

Kept free of Keras, JAX and numpy: the command line catches these before it
has loaded any of them (see cli.py).
"""


class Reported(Exception):
    """A refusal or an early stop: `{label}: {message}` on stderr, no traceback."""

    label = "error"
    exit_status = 2  # bad input: nothing was trained or written


class UsageError(Reported):
    """A bad command-line value or file."""
