"""The best epoch of a run, and early stopping, decided as Keras' own
`EarlyStopping(monitor, patience=N, restore_best_weights=True)` decides them.

After every epoch the monitored history key (`--monitor`, `val_loss` by
default) is compared with the best value so far: strictly lower is better
for a loss, strictly higher for a metric whose direction is "up" (accuracy),
as `mode="auto"` infers it. The best epoch's weights are kept on the host;
`model.keras` gets them, `last.keras` the last epoch's. With `--patience N`
the run stops once N epochs in a row have not improved on the best (never
after the first epoch), as fit() stops with that callback.

All of it, the best weights included, goes into every checkpoint, so that a
resumed run picks the same epoch and stops at the same one.
"""

from __future__ import annotations

import dataclasses
import operator

import numpy as np

from ..errors import UsageError

DEFAULT_MONITOR = "val_loss"


class BestEpoch:
    """The best epoch so far by one history key, and whether to stop."""

    def __init__(self, monitor: str | None, patience: int | None, increasing: bool):
        self.monitor = monitor
        self.patience = patience
        self.better = operator.gt if increasing else operator.lt
        self.best: float | None = None
        self.best_epoch: int | None = None  # from 0
        self.wait = 0  # epochs since the best, as EarlyStopping counts them
        self.stopped_early = False
        # Trainable then non-trainable variables' values, as host arrays.
        self.weights: list[np.ndarray] | None = None

    @classmethod
    def for_run(
        cls,
        monitor: str | None,
        patience: int | None,
        validated: bool,
        metrics: list,
    ) -> BestEpoch:
        """Checks `monitor` against the keys the run's history will have
        (`metrics`: the run's metric objects), before any training."""
        names = ["loss", *(m.name for m in flat_metrics(metrics) if m.name != "loss")]
        keys = names + [f"val_{name}" for name in names] * validated
        if monitor is None:
            monitor = DEFAULT_MONITOR if validated else None
        elif monitor not in keys:
            raise UsageError(
                f"--monitor {monitor}: this run's history has no such key; it "
                f"has {', '.join(keys)}"
                + ("" if validated else " (no validation: --validation-split 0)")
            )
        if patience is not None and not validated:
            raise UsageError(
                "--patience needs validation: the data has no x_val/y_val and "
                "--validation-split is 0"
            )
        if monitor is None:
            return cls(None, None, increasing=False)
        return cls(monitor, patience, direction(monitor, metrics) == "up")

    def after_epoch(self, epoch: int, history: dict, weights) -> bool:
        """After epoch `epoch` (from 0) is in `history`: True to stop.

        `weights()` fetches the weights, only when this epoch is the best.
        """
        if self.monitor is None:
            return False
        current = history[self.monitor][-1]
        self.wait += 1
        if self.best is None or self.better(current, self.best):
            self.best, self.best_epoch, self.wait = current, epoch, 0
            self.weights = [np.asarray(value) for value in weights()]
            return False
        if self.patience is not None and self.wait >= self.patience and epoch > 0:
            self.stopped_early = True
        return self.stopped_early

    # What a checkpoint holds: `state()` as JSON, `weights` as arrays.

    def state(self) -> dict:
        return {
            "monitor": self.monitor,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "stopped_early": self.stopped_early,
        }

    def restore(self, state: dict, weights: list[np.ndarray] | None) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.wait, self.stopped_early = state["wait"], state["stopped_early"]
        self.weights = weights if self.best_epoch is not None else None


@dataclasses.dataclass
class Outcome:
    """How a run's training ended; the model holds the weights to keep."""

    history: dict[str, list[float]]
    monitor: str | None = None
    best_epoch: int | None = None  # from 1: the epoch whose weights are kept
    stopped_early: bool = False
    # The last epoch's weights (trainable, then non-trainable) where the
    # model holds another epoch's; None where it holds the last.
    last_weights: list | None = None
    resumed: dict | None = None  # where a resumed run continued, if it was
    compilation: dict | None = None  # how its steps were compiled (compilation.py)

    @classmethod
    def of(
        cls, best: BestEpoch, history: dict, variables: list, resumed: dict | None
    ) -> Outcome:
        """Gives `variables` the best epoch's weights, keeping the last ones."""
        last_weights = None
        epochs = len(next(iter(history.values()), []))
        if best.weights is not None and best.best_epoch != epochs - 1:
            last_weights = [np.asarray(v.value) for v in variables]
            for variable, value in zip(variables, best.weights, strict=True):
                variable.assign(value)
        best_epoch = None if best.best_epoch is None else best.best_epoch + 1
        return cls(
            history, best.monitor, best_epoch, best.stopped_early, last_weights, resumed
        )

    @property
    def ended(self) -> str:
        return "stopped early" if self.stopped_early else "completed"


def direction(monitor: str, metrics: list) -> str:
    """`up` or `down`: how `mode="auto"` of Keras' callbacks reads the key."""
    name = monitor.removeprefix("val_")
    if name == "loss":
        return "down"
    for metric in flat_metrics(metrics):
        if metric.name == name and getattr(metric, "_direction", None):
            return metric._direction
    raise UsageError(
        f"--monitor {monitor}: cannot tell whether {name} should go up or down "
        "(its metric sets no _direction); monitor another key"
    )


def flat_metrics(metrics: list) -> list:
    """The metrics themselves: compile()'s containers hold theirs in `metrics`."""
    flat = []
    for metric in metrics:
        inner = getattr(metric, "metrics", None)
        flat.extend(flat_metrics(inner) if isinstance(inner, list) else [metric])
    return flat
