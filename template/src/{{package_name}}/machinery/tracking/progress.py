"""Progress bars that show what history.json will hold.

`keras.utils.Progbar` averages each value it is given over the steps of the
epoch, unless told that a value is an average already. Every value here is
(each metric's result over the epoch so far, like fit()'s logs), so the bars
show them as given: the numbers at the end of an epoch are the history's.
The count is the number of steps trained, never past the epoch's total.
"""

from __future__ import annotations

import keras


class EpochBar:
    """One epoch's bar: live on a terminal, one line per epoch in a log."""

    def __init__(self, epoch: int, epochs: int, steps: int, verbosity: int):
        self.steps = steps
        self.verbosity = verbosity
        if verbosity:
            print(f"Epoch {epoch + 1}/{epochs}")
        self.bar = keras.utils.Progbar(steps, verbose=verbosity, stateless_metrics=())

    def update(self, step: int, logs: dict) -> None:
        """After `step` steps of the epoch; drawn on a terminal only."""
        if self.verbosity == 1:
            self.bar.update(min(step, self.steps), as_floats(logs), finalize=False)

    def finish(self, logs: dict) -> None:
        """The epoch's last line, with its validation results."""
        if self.verbosity:
            self.bar.update(self.steps, as_floats(logs), finalize=True)


def as_floats(logs: dict) -> list[tuple[str, float]]:
    return [(name, float(value)) for name, value in logs.items()]
