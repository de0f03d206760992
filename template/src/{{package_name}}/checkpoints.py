"""Checkpoints that survive kill -9, a clean stop on SIGTERM or Ctrl-C, and
the check that stops a diverging run.

A checkpoint is one .npz file of plain arrays (it loads with
allow_pickle=False) holding all that an exact resume needs:
- every variable: the model's weights, the optimizer's moments and step
  count, the metrics' running totals, and the state of the model's random
  generators (Keras keeps it in non-trainable variables);
- the position: the epoch, how many of its batches are trained, and the
  order in which that epoch visits the samples;
- the finished epochs' history, the settings the run depends on, and the
  fingerprint of its model, optimizer, loss and metrics (`fingerprint`).

Each file is written under a temporary name, flushed to disk and renamed
(`saving.replace_atomically`), so a kill at any moment leaves every
`ckpt-*.npz` complete. The newest two are kept: the previous one is deleted
only after a new one is in place, and a resume falls back to it when the
newest cannot be read.

In a run of several processes, all of them take the same decisions at the
same steps and process 0 alone writes; the files must be on storage that every
process can read for a resume.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import sys
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils

from . import fingerprint, parallel
from .artifacts import require_writable_directory
from .config import TrainConfig
from .data import Split
from .errors import Reported
from .saving import replace_atomically, require_free_space

KEEP = 2
STATE_PARTS = (
    "trainable_variables",
    "non_trainable_variables",
    "optimizer_variables",
    "metrics_variables",
)
# Four lists of arrays, in STATE_PARTS order.
State = tuple[list, list, list, list]


class CheckpointError(Reported):
    """A checkpoint directory that cannot be used as asked: exit status 2."""


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


class Diverged(TrainingStopped):
    exit_status = 3


@dataclasses.dataclass
class Checkpoint:
    epoch: int  # the epoch in progress, from 0
    step: int  # how many of its batches are trained
    order: np.ndarray  # the order in which it visits the training samples
    history: dict[str, list[float]]  # the finished epochs
    state: State


class Guard:
    """Checkpoints, stop signals and the finite-loss check of one training run.

    The training loops call `after_step` after every step and `after_epoch`
    after every epoch. Both take the state, or a function that fetches it, and
    copy it off the device only when a checkpoint is written: between
    checkpoints they cost no synchronization at all.
    """

    def __init__(self, config: TrainConfig, train: Split, recipe: dict):
        """`recipe`: the run's `fingerprint.of_run`, which a resume must match."""
        self.config = config
        self.train = train
        self.steps_per_epoch = config.steps_per_epoch(len(train))
        self.directory = config.checkpoint_dir
        self.last_saved: Path | None = None
        self.stop_signal: int | None = None
        self._position = 0  # global step reached
        self._previous_handlers = {}
        if self.directory is not None:
            self.settings = {**run_settings(config, train), "recipe": recipe}
            self._open_directory()

    # Signals: within `with guard:`, SIGTERM and SIGINT ask for a stop at the
    # next step boundary instead of killing the process mid-step.

    def __enter__(self) -> Guard:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous_handlers[signum] = signal.signal(signum, self._stop)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    def _stop(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.stop_signal == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop at once
        self.stop_signal = signum
        name = signal.Signals(signum).name
        print(f"\n{name} received: stopping after the current step", file=sys.stderr)

    # Called by the training loops.

    def after_step(
        self,
        epoch: int,
        step: int,
        order: np.ndarray,
        history: dict,
        state: State | Callable[[], State],
        logs: dict,
    ) -> None:
        """After `step` batches (from 1) of `epoch`: checkpoint or stop if due.

        A loop that runs several steps per call reports only the last; a
        checkpoint is due when a multiple of `checkpoint_every` was passed.
        """
        position, self._position = self._position, epoch * self.steps_per_epoch + step
        if step == self.steps_per_epoch:
            return  # after_epoch follows, once validation is done
        every = self.config.checkpoint_every
        due = every and self._position // every > position // every
        stop = self._stop_requested()
        if stop is None and not (self.directory and due):
            return
        saved = None
        if self.directory is not None:
            self._check_finite(float(logs["loss"]), epoch)
            saved = self._save(Checkpoint(epoch, step, order, history, state))
        if stop is not None:
            raise Interrupted(stop, saved)

    def after_epoch(
        self, epoch: int, history: dict, state: State | Callable[[], State]
    ) -> None:
        self._check_finite(history["loss"][-1], epoch)
        stop = self._stop_requested()
        saved = None
        if self.directory is not None:
            next_order = self.epoch_order(epoch + 1)
            saved = self._save(Checkpoint(epoch + 1, 0, next_order, history, state))
        if stop is not None and epoch + 1 < self.config.epochs:
            raise Interrupted(stop, saved)

    def epoch_order(self, epoch: int) -> np.ndarray:
        return self.train.epoch_order(epoch, self.config.seed, self.config.shuffle)

    def resume(self, like: State) -> Checkpoint | None:
        """The newest loadable checkpoint, if asked to resume and there is one.

        `like` is the freshly built state: a checkpoint whose model or
        optimizer variables differ from it in number or shape is refused.
        Metric variables are not compared; fit() may create them later.
        """
        if self.directory is not None and parallel.is_main_process():
            # A checkpoint holds the whole state; room for a new one beside
            # the newest, so that a full disk is found now, not hours in.
            size = sum(value.nbytes for part in like for value in part)
            require_free_space(
                self.directory,
                2 * size + 2**20,
                f"--checkpoint-dir {self.directory}",
                "this run",
                CheckpointError,
            )
        if self.directory is None or not self.config.resume:
            return None
        paths = self._checkpoint_paths()
        for path in paths:
            try:
                checkpoint, settings = read(path)
            except UnreadableCheckpoint as e:
                if not parallel.is_main_process():
                    continue
                # Set aside, so that no later save or prune mistakes it for
                # the newest checkpoint.
                path.replace(path.with_name(path.name + ".corrupt"))
                print(
                    f"warning: {path} is unreadable ({e}); moved it to "
                    f"{path.name}.corrupt and tried the one before",
                    file=sys.stderr,
                )
                continue
            self._check_compatible(path, settings, checkpoint, like)
            self.last_saved = path
            self._position = checkpoint.epoch * self.steps_per_epoch + checkpoint.step
            return checkpoint
        # Set aside by this resume or an earlier one: a second --resume must
        # not take an empty directory for a run that never started.
        unreadable = list(self.directory.glob("ckpt-*.npz.corrupt"))
        if unreadable:
            raise CheckpointError(
                f"--resume: none of the {len(unreadable)} checkpoints in "
                f"{self.directory} is readable (kept as *.corrupt); remove them, "
                "or use another --checkpoint-dir, to start over"
            )
        print(f"No checkpoint in {self.directory} yet: starting from the beginning.")
        return None

    @property
    def position(self) -> int:
        """The global training step the run has reached (or resumes from), as
        of the last `after_step`: an epoch's end once its last step is in."""
        return self._position

    # Internals.

    def _open_directory(self) -> None:
        require_writable_directory(self.directory, "--checkpoint-dir", CheckpointError)
        # A write killed before its rename leaves a temporary file; never read.
        if parallel.is_main_process():
            for leftover in self.directory.glob(".ckpt-*"):
                leftover.unlink(missing_ok=True)
        if not self.config.resume and self._checkpoint_paths():
            raise CheckpointError(
                f"--checkpoint-dir {self.directory} already holds checkpoints: add "
                "--resume to continue that run, or choose an empty directory"
            )

    def _checkpoint_paths(self) -> list[Path]:
        """Newest first: the names carry the zero-padded global step."""
        return sorted(self.directory.glob("ckpt-*.npz"), reverse=True)

    def _save(self, checkpoint: Checkpoint) -> Path:
        state = checkpoint.state() if callable(checkpoint.state) else checkpoint.state
        state = tuple([np.asarray(value) for value in part] for part in state)
        for part, values in zip(STATE_PARTS, state, strict=True):
            if not all(np.isfinite(v).all() for v in values if v.dtype.kind == "f"):
                raise Diverged(
                    f"the {part.replace('_', ' ')} are no longer finite in epoch "
                    f"{checkpoint.epoch + 1}; stopped without saving them"
                    + self._last_good()
                )
        checkpoint = dataclasses.replace(checkpoint, state=state)
        global_step = checkpoint.epoch * self.steps_per_epoch + checkpoint.step
        path = self.directory / f"ckpt-{global_step:010d}.npz"
        self.last_saved = path
        if parallel.is_main_process():
            write(path, checkpoint, self.settings)
            for old in self._checkpoint_paths()[KEEP:]:
                old.unlink(missing_ok=True)
        return path

    def _stop_requested(self) -> int | None:
        """The signal to stop on at this step, if any.

        With several processes, a signal to any of them stops all of them, at
        the same step: they decide together. A signal that lands while they
        do is kept for the next decision, never dropped.
        """
        if jax.process_count() == 1:
            return self.stop_signal
        signals = multihost_utils.process_allgather(np.int32(self.stop_signal or 0))
        return int(signals.max()) or None

    def _check_finite(self, loss: float, epoch: int) -> None:
        if not math.isfinite(loss):
            raise Diverged(
                f"the training loss became {loss} in epoch {epoch + 1}; stopped "
                "without saving (a smaller --learning-rate may help)"
                + self._last_good()
            )

    def _last_good(self) -> str:
        if self.last_saved is None:
            return ""
        return f"; the last good checkpoint is {self.last_saved}"

    def _check_compatible(
        self, path: Path, settings: dict, checkpoint: Checkpoint, like: State
    ) -> None:
        changed = [
            f"{name} {settings.get(name)!r} (now {value!r})"
            for name, value in self.settings.items()
            if name != "recipe" and settings.get(name) != value
        ]
        if changed:
            raise CheckpointError(
                f"--resume: {path} belongs to a run with other settings: "
                + ", ".join(changed)
            )
        recipe = self.settings["recipe"]
        changed = fingerprint.changes(settings.get("recipe", {}), recipe)
        if changed:
            raise CheckpointError(
                f"--resume: {path} cannot continue this run: " + "; ".join(changed)
            )
        for part, saved, fresh in zip(
            STATE_PARTS[:3], checkpoint.state[:3], like[:3], strict=True
        ):
            shapes = [np.shape(v) for v in saved]
            if shapes != [np.shape(v) for v in fresh]:
                raise CheckpointError(
                    f"--resume: {path} holds {part} of another model "
                    f"({len(saved)} arrays, shapes {shapes[:3]}...)"
                )
        self._check_position(path, checkpoint)

    def _check_position(self, path: Path, checkpoint: Checkpoint) -> None:
        """Where the checkpoint says the run stood, checked as strictly as a
        data file: it decides which samples are trained next."""
        samples = len(self.train)
        problem = None
        if not isinstance(checkpoint.epoch, int) or checkpoint.epoch < 0:
            problem = f"epoch {checkpoint.epoch!r} is not a count from 0"
        elif not isinstance(checkpoint.step, int) or not (
            0 <= checkpoint.step < self.steps_per_epoch
        ):
            problem = (
                f"step {checkpoint.step!r} is outside an epoch of "
                f"{self.steps_per_epoch} steps"
            )
        elif checkpoint.order.shape != (samples,) or not np.array_equal(
            np.sort(checkpoint.order), np.arange(samples)
        ):
            problem = f"its sample order is not an order of the {samples} samples"
        elif (
            not isinstance(checkpoint.history, dict)
            or (checkpoint.epoch > 0 and not checkpoint.history)
            or any(
                not isinstance(values, list) or len(values) != checkpoint.epoch
                for values in checkpoint.history.values()
            )
        ):
            problem = f"its history does not hold {checkpoint.epoch} epochs"
        if problem:
            raise CheckpointError(f"--resume: {path} is inconsistent: {problem}")


class UnreadableCheckpoint(Exception):
    pass


def run_settings(config: TrainConfig, train: Split) -> dict:
    """What a run's result depends on besides the code: resume must match it."""
    return {
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "seed": config.seed,
        "shuffle": config.shuffle,
        "train_data_sha256": train.sha256(),
    }


def write(path: Path, checkpoint: Checkpoint, settings: dict) -> None:
    meta = {
        "epoch": checkpoint.epoch,
        "step": checkpoint.step,
        "history": checkpoint.history,
        "settings": settings,
        "counts": [len(part) for part in checkpoint.state],
    }
    arrays = {"meta": np.array(json.dumps(meta)), "order": checkpoint.order}
    for part, values in zip(STATE_PARTS, checkpoint.state, strict=True):
        for i, value in enumerate(values):
            arrays[f"{part}.{i}"] = value
    replace_atomically(path, lambda tmp: np.savez(tmp, **arrays))


def read(path: Path) -> tuple[Checkpoint, dict]:
    """A checkpoint and the settings it was written with."""
    try:
        # Reading every member checks every member's CRC.
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        meta = json.loads(str(arrays["meta"]))
        state = tuple(
            [arrays[f"{part}.{i}"] for i in range(count)]
            for part, count in zip(STATE_PARTS, meta["counts"], strict=True)
        )
        checkpoint = Checkpoint(
            meta["epoch"], meta["step"], arrays["order"], meta["history"], state
        )
        return checkpoint, meta["settings"]
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise UnreadableCheckpoint(f"{type(e).__name__}: {e}") from None
