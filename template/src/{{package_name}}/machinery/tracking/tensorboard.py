"""TensorBoard event files of a training run, written without TensorFlow.

`tensorboard --logdir runs` shows them. Scalars, all against the global
training step (so that a resumed run lines up with the run it continues):
- `train/<name>`: each metric's average over its epoch so far, after a
  compiled call of training steps, at most every WRITE_SECONDS (calls of
  one step each would otherwise spend more time logging than training);
- `epoch/<name>`, `epoch/val_<name>`: the epoch's values, as in history.json;
- `learning_rate`: the optimizer's rate at that step, schedules included.

A run first trims what earlier runs left in its directory: a resumed run
keeps the events up to the step it resumes from and drops those a killed or
stopped run logged past it, which it will log again; a new run drops them
all. Each step then appears once, whichever loader TensorBoard uses (its
default fast loader ignores the purge steps files can carry for this).
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import jax
import keras
from google.protobuf.message import DecodeError
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto import event_pb2
from tensorboardX.summary import scalar

from ..safety.saving import replace_atomically

WRITE_SECONDS = 1.0
FLUSH_SECONDS = 10.0  # to disk, fsync included


class Board:
    """Writes one run's scalars; a no-op without a directory."""

    def __init__(self, directory: Path | None, optimizer, first_step: int):
        self.writer = None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            keep_until(directory, first_step)
            # Written here, not by a writer thread: a full disk then raises
            # in the run, which ends as any failed write does (a thread that
            # died of it left the run waiting on its queue for ever).
            self.writer = EventsWriter(
                str(directory / "events"),
                filename_suffix=f".{os.getpid()}.{time.time_ns()}",  # never reused
            )
            self.rate = learning_rate(optimizer)
            self.flushed = time.monotonic()
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
            self._add(f"epoch/{name}", value, step)
        self.writer.flush()
        self.flushed = time.monotonic()

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
            self._add(f"train/{name}", float(value), step)
        self._add("learning_rate", self.rate(step), step)
        self.written = time.monotonic()
        if self.written - self.flushed >= FLUSH_SECONDS:
            self.writer.flush()  # for a TensorBoard watching the run
            self.flushed = self.written

    def _add(self, tag: str, value: float, step: int) -> None:
        summary = scalar(tag, value)
        self.writer.write_event(
            event_pb2.Event(wall_time=time.time(), step=step, summary=summary)
        )


def learning_rate(optimizer: keras.Optimizer):
    """step -> the rate the optimizer applies at that step (a schedule's too)."""
    rate = optimizer.get_config()["learning_rate"]
    if isinstance(rate, dict):
        # Compiled once: run op by op, a schedule took about 10 ms a point.
        schedule = jax.jit(keras.optimizers.schedules.deserialize(rate))
        return lambda step: float(schedule(step))
    return lambda step: float(rate)


def keep_until(directory: Path, step: int) -> None:
    """Rewrites the event files in `directory` without their events past
    `step` (a new run, step 0: without any), each file replaced atomically;
    a file left with no scalars is removed."""
    for path in sorted(directory.glob("events.out.tfevents.*")):
        records = list(_records(path.read_bytes()))
        kept = [(raw, event) for raw, event in records if event.step <= step]
        if not any(event.summary.value for _, event in kept):
            path.unlink()
        elif len(kept) < len(records):
            data = b"".join(raw for raw, _ in kept)
            replace_atomically(path, lambda tmp, data=data: Path(tmp).write_bytes(data))


def _records(data: bytes):
    """(the record's bytes, its Event) for each complete TFRecord of an event
    file: length (8 bytes), its CRC (4), the Event, its CRC (4). A record cut
    short by a killed writer ends the file."""
    offset = 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        end = offset + 12 + length + 4
        if end > len(data):
            return
        try:
            event = event_pb2.Event.FromString(data[offset + 12 : end - 4])
        except DecodeError:
            return  # not an event: TensorBoard stops reading here too
        yield data[offset:end], event
        offset = end
