"""Stopping a training run cleanly: SIGTERM or Ctrl-C end it at a step boundary.

Within `with StopSignals() as stops:`, SIGTERM and SIGINT are recorded
instead of killing the process mid-step; the checkpoint guard asks
`stops.requested()` at each step boundary and, if a signal came, saves and
raises `Interrupted`. A second Ctrl-C stops at once.

In a run of several processes, a signal to any of them stops all of them at
the same step: `requested()` is a decision they take together.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils

from ..errors import Reported


class TrainingStopped(Reported):
    """Training ended early; the command line prints why and exits."""

    exit_status = 1


class Interrupted(TrainingStopped):
    label = "stopped"

    def __init__(self, signum: int, checkpoint: Path | None):
        name = signal.Signals(signum).name
        if checkpoint is None:
            message = f"{name}: training stopped; nothing saved (no --checkpoint-dir)"
            self.exit_status = 128 + signum
        else:
            message = (
                f"{name}: training stopped after a complete step and saved "
                f"{checkpoint}; run the same command with --resume to continue"
            )
            # A stop that saved its work is a success for a job scheduler;
            # Ctrl-C keeps the shell's convention.
            self.exit_status = 0 if signum == signal.SIGTERM else 128 + signum
        super().__init__(message)


class StopSignals:
    """SIGTERM and SIGINT, recorded while the `with` block runs.

    Handlers can only be installed from the main thread; elsewhere (a run
    started from a worker thread) the signals keep their own behaviour.
    """

    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def requested(self) -> int | None:
        """The signal to stop on at this step boundary, if any.

        With several processes, every process must call this at the same
        step; a signal that lands while they decide is kept for the next
        decision, never dropped.
        """
        if jax.process_count() == 1:
            return self.received
        signals = multihost_utils.process_allgather(np.int32(self.received or 0))
        return int(signals.max()) or None

    def _record(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop at once
        self.received = signum
        name = signal.Signals(signum).name
        print(f"\n{name} received: stopping after the current step", file=sys.stderr)
