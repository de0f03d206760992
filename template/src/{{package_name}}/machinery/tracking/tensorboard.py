"""TensorBoard event files of a training run, written without TensorFlow.

`tensorboard --logdir runs` shows them. Scalars, all against the global
training step (so that a resumed run lines up with the run it continues):
- `train/<name>`: each metric's average over its epoch so far, after a
  compiled call of training steps, at most every WRITE_SECONDS (calls of
  one step each would otherwise spend more time logging than training);
- `epoch/<name>`, `epoch/val_<name>`: the epoch's values, as in history.json;
- `learning_rate`: the optimizer's rate at that step, schedules included.

A run starts its event file with a purge step: TensorBoard then hides what
earlier files of the directory logged from that step on (an earlier run's
curves, or a killed run's steps past the checkpoint it resumes from), and
nothing is deleted.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import keras
from tensorboardX import SummaryWriter

WRITE_SECONDS = 1.0


class Board:
    """Writes one run's scalars; a no-op without a directory."""

    def __init__(self, directory: Path | None, optimizer, first_step: int):
        self.writer = None
        if directory is not None:
            self.writer = SummaryWriter(
                str(directory), purge_step=first_step, flush_secs=10
            )
            self.rate = learning_rate(optimizer)
        # The logs of the newest call are written when the next one arrives
        # (or the epoch ends): reading them sooner would make Python wait for
        # that call to finish before it could dispatch the next one.
        self.pending: tuple[int, dict] | None = None
        self.written = time.monotonic()

    def after_call(self, step: int, logs: dict) -> None:
        if self.writer is None:
            return
        if time.monotonic() - self.written >= WRITE_SECONDS:
            self._write_pending()
        self.pending = (step, logs)

    def after_epoch(self, step: int, logs: dict[str, float]) -> None:
        if self.writer is None:
            return
        self._write_pending()
        for name, value in logs.items():
            self.writer.add_scalar(f"epoch/{name}", value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self._write_pending()
            self.writer.close()

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _write_pending(self) -> None:
        if self.pending is None:
            return
        step, logs = self.pending
        self.pending = None
        for name, value in logs.items():
            self.writer.add_scalar(f"train/{name}", float(value), step)
        self.writer.add_scalar("learning_rate", self.rate(step), step)
        self.written = time.monotonic()


def learning_rate(optimizer: keras.Optimizer):
    """step -> the rate the optimizer applies at that step (a schedule's too)."""
    rate = optimizer.get_config()["learning_rate"]
    if isinstance(rate, dict):
        # Compiled once: run op by op, a schedule took about 10 ms a point.
        schedule = jax.jit(keras.optimizers.schedules.deserialize(rate))
        return lambda step: float(schedule(step))
    return lambda step: float(rate)
