"""Checkpoints that survive kill -9, and the guard that decides after every
step whether a run checkpoints or stops: on SIGTERM or Ctrl-C (stops.py), or
on a loss that is no longer finite.

A checkpoint is one .npz file of plain arrays (it loads with
allow_pickle=False) holding all that an exact resume needs:
- every variable: the model's weights, the optimizer's moments and step
  count, the metrics' running totals, and the state of the model's random
  generators (Keras keeps it in non-trainable variables);
- the position: the epoch, how many of its batches are trained, and the
  order in which that epoch visits the samples;
- the finished epochs' history, the settings the run depends on, and the
  fingerprint of its model, optimizer, loss and metrics (`fingerprint`);
- the best epoch so far, its weights and the early-stopping count
  (`monitoring`).

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
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...config import TrainConfig
from ..errors import Reported
from ..execution import parallel
from ..tracking import monitoring
from ..tracking.artifacts import require_writable_directory
from . import fingerprint
from .saving import replace_atomically, require_free_space
from .stops import Interrupted, StopSignals, TrainingStopped

if TYPE_CHECKING:  # handed in, never imported: data.py is the user's
    from ...data import Dataset

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


class Diverged(TrainingStopped):
    exit_status = 3


@dataclasses.dataclass
class Checkpoint:
    epoch: int  # the epoch in progress, from 0
    step: int  # how many of its batches are trained
    order: np.ndarray  # the order in which it visits the training samples
    history: dict[str, list[float]]  # the finished epochs
    state: State
    # monitoring.BestEpoch's state() and weights, as of this checkpoint.
    best: dict = dataclasses.field(default_factory=dict)
    best_weights: list = dataclasses.field(default_factory=list)
    # How the steps were compiled (compilation.Plan.record()): a resume
    # compiles them the same way.
    plan: dict | None = None


class Guard:
    """Decides, after every step and epoch of one run, whether to checkpoint
    or to stop.

    The training loops call `after_step` after every step and `after_epoch`
    after every epoch. Both take the state, or a function that fetches it, and
    copy it off the device only when a checkpoint is written: between
    checkpoints they cost no synchronization at all. The files are
    `CheckpointFiles`', the stop signals `stops.StopSignals`' (within
    `with guard:`); a loss or a state that is no longer finite ends the run
    (`Diverged`) instead of being saved. Early stopping is decided after each
    epoch by `monitoring.BestEpoch`, whose state the checkpoints carry.
    """

    def __init__(self, config: TrainConfig, data: Dataset, recipe: dict, metrics):
        """`recipe`: the run's `fingerprint.of_run`, which a resume must match;
        `metrics`: the run's metric objects, which name its history's keys."""
        self.config = config
        self.train = data.train
        self.steps_per_epoch = config.steps_per_epoch(len(data.train))
        self.best = monitoring.BestEpoch.for_run(
            config.monitor, config.patience, data.val is not None, metrics
        )
        self.signals = StopSignals()
        self.last_saved: Path | None = None
        self.resumed: dict | None = None  # where a resumed run continued
        self.plan: dict | None = None  # compilation.Plan.record(), once chosen
        self._first_epoch = 0
        self._position = 0  # global step reached
        self.files = None
        if config.checkpoint_dir is not None:
            self.settings = {**run_settings(config, data), "recipe": recipe}
            self.files = CheckpointFiles(
                config.checkpoint_dir, config.resume, config.output
            )

    def __enter__(self) -> Guard:
        self.signals.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self.signals.__exit__(*exc_info)

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
        stop = self.signals.requested()
        if stop is None and not (self.files and due):
            return
        saved = None
        if self.files is not None:
            self._check_finite(float(logs["loss"]), epoch)
            saved = self._save(Checkpoint(epoch, step, order, history, state))
        if stop is not None:
            raise Interrupted(stop, saved)

    def after_epoch(
        self, epoch: int, history: dict, state: State | Callable[[], State]
    ) -> bool:
        """After epoch `epoch` (from 0), validation included: True when the
        run stops early here."""
        self._check_finite(history["loss"][-1], epoch)
        fetch = state if callable(state) else lambda: state

        def weights():
            trainable_variables, non_trainable_variables, *_ = fetch()
            return [*trainable_variables, *non_trainable_variables]

        stop_early = self.best.after_epoch(epoch, history, weights)
        stop = self.signals.requested()
        saved = None
        if self.files is not None:
            next_order = self.epoch_order(epoch + 1)
            saved = self._save(Checkpoint(epoch + 1, 0, next_order, history, state))
        if stop is not None and epoch + 1 < self.config.epochs and not stop_early:
            raise Interrupted(stop, saved)
        return stop_early

    def epochs(self) -> range:
        """The epochs left to train: from the resumed one on, none once the
        run has stopped early."""
        if self.best.stopped_early:
            return range(0)
        return range(self._first_epoch, self.config.epochs)

    def finish(self, history: dict, variables: list) -> monitoring.Outcome:
        """After the last epoch: `variables` (trainable then non-trainable, the
        model's) take the best epoch's weights; the outcome keeps the last's."""
        outcome = monitoring.Outcome.of(self.best, history, variables, self.resumed)
        return dataclasses.replace(outcome, compilation=self.plan)

    def epoch_order(self, epoch: int) -> np.ndarray:
        return self.train.epoch_order(epoch, self.config.seed, self.config.shuffle)

    def resume(self, like: State) -> Checkpoint | None:
        """The newest loadable checkpoint, if asked to resume and there is one.

        `like` is the freshly built state: a checkpoint whose model or
        optimizer variables differ from it in number or shape is refused.
        Metric variables are not compared; fit() may create them later.
        """
        if self.files is None:
            return None
        # A checkpoint holds the whole state; room for a new one beside the
        # newest, so that a full disk is found now, not hours in.
        self.files.require_room(sum(value.nbytes for part in like for value in part))
        if not self.config.resume:
            return None
        for path, checkpoint, settings in self.files.readable():
            check_compatible(path, settings, checkpoint, self.settings, like)
            check_position(path, checkpoint, len(self.train), self.steps_per_epoch)
            self.last_saved = path
            self._position = checkpoint.epoch * self.steps_per_epoch + checkpoint.step
            self._first_epoch = checkpoint.epoch
            self.best.restore(checkpoint.best, checkpoint.best_weights)
            self.resumed = {
                "checkpoint": str(path),
                "epoch": checkpoint.epoch + 1,
                "step": checkpoint.step,
                "global_step": self._position,
            }
            if self.config.verbose:
                print(resumed_line(path, checkpoint, self.config, self.best))
            return checkpoint
        self.files.none_readable()
        return None

    @property
    def position(self) -> int:
        """The global training step the run has reached (or resumes from), as
        of the last `after_step`: an epoch's end once its last step is in."""
        return self._position

    # Internals.

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
        checkpoint = dataclasses.replace(
            checkpoint,
            state=state,
            best=self.best.state(),
            best_weights=self.best.weights or [],
            plan=self.plan,
        )
        global_step = checkpoint.epoch * self.steps_per_epoch + checkpoint.step
        self.last_saved = self.files.save(global_step, checkpoint, self.settings)
        return self.last_saved

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


class CheckpointFiles:
    """The `ckpt-<global step>.npz` files of one --checkpoint-dir: the newest
    KEEP, written by process 0 alone, read newest first. Each names the run's
    output directory, where a resume goes on writing (`output`)."""

    def __init__(self, directory: Path, resume: bool, output: Path | None = None):
        self.directory = directory
        self.output = output
        require_writable_directory(directory, "--checkpoint-dir", CheckpointError)
        # A write killed before its rename leaves a temporary file; never read.
        if parallel.is_main_process():
            for leftover in directory.glob(".ckpt-*"):
                leftover.unlink(missing_ok=True)
        if not resume and self.paths():
            raise CheckpointError(
                f"--checkpoint-dir {directory} already holds checkpoints: add "
                "--resume to continue that run, or choose an empty directory"
            )

    def paths(self) -> list[Path]:
        """Newest first: the names carry the zero-padded global step."""
        return sorted(self.directory.glob("ckpt-*.npz"), reverse=True)

    def require_room(self, state_bytes: int) -> None:
        """Room for one more checkpoint of a state of this size."""
        if parallel.is_main_process():
            require_free_space(
                self.directory,
                2 * state_bytes + 2**20,
                f"--checkpoint-dir {self.directory}",
                "this run",
                CheckpointError,
            )

    def save(self, global_step: int, checkpoint: Checkpoint, settings: dict) -> Path:
        """Writes the checkpoint (process 0), then drops all but the newest
        KEEP; returns its path, the same in every process."""
        path = self.directory / f"ckpt-{global_step:010d}.npz"
        if parallel.is_main_process():
            write(path, checkpoint, settings, self.output)
            for old in self.paths()[KEEP:]:
                old.unlink(missing_ok=True)
        return path

    def readable(self):
        """Yields (path, checkpoint, settings), newest first, setting aside
        each unreadable one as `*.corrupt` with a warning."""
        for path in self.paths():
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
            yield path, checkpoint, settings

    def none_readable(self) -> None:
        """Where a resume found no checkpoint: a start from the beginning,
        unless checkpoints were set aside as unreadable, now or before (a
        second --resume must not take them for a run that never started)."""
        unreadable = list(self.directory.glob("ckpt-*.npz.corrupt"))
        if unreadable:
            raise CheckpointError(
                f"--resume: none of the {len(unreadable)} checkpoints in "
                f"{self.directory} is readable (kept as *.corrupt); remove them, "
                "or use another --checkpoint-dir, to start over"
            )
        print(f"No checkpoint in {self.directory} yet: starting from the beginning.")


def check_compatible(
    path: Path, settings: dict, checkpoint: Checkpoint, ours: dict, like: State
) -> None:
    """Refuses a checkpoint of another run: other settings (`ours`: this run's,
    with its recipe), another model, optimizer, loss or metrics."""
    changed = [
        setting_change(name, settings.get(name), value)
        for name, value in ours.items()
        if name not in UNCOMPARED and settings.get(name) != value
    ]
    if changed:
        raise CheckpointError(
            f"--resume: {path} belongs to a run with other settings: "
            + ", ".join(changed)
        )
    changed = fingerprint.changes(settings.get("recipe", {}), ours["recipe"])
    epochs = settings.get("epochs"), ours["epochs"]
    if changed and epochs[0] is not None and epochs[0] != epochs[1]:
        # A schedule over the whole run (CosineDecay(lr, total_steps), say)
        # is a function of --epochs: say which flag, then what it changed.
        old, new = epochs
        changed.insert(0, f"--epochs changed ({old} -> {new}), which the run uses")
    if changed:
        raise CheckpointError(
            f"--resume: {path} cannot continue this run: " + "; ".join(changed)
        )
    best = ("best epoch's weights", checkpoint.best_weights, [*like[0], *like[1]])
    parts = [*zip(STATE_PARTS[:3], checkpoint.state[:3], like[:3], strict=True)]
    for part, saved, fresh in parts + [best] * bool(checkpoint.best_weights):
        shapes = [np.shape(v) for v in saved]
        if shapes != [np.shape(v) for v in fresh]:
            raise CheckpointError(
                f"--resume: {path} holds {part} of another model "
                f"({len(saved)} arrays, shapes {shapes[:3]}...)"
            )


def check_position(
    path: Path, checkpoint: Checkpoint, samples: int, steps_per_epoch: int
) -> None:
    """Where the checkpoint says the run stood, checked as strictly as a data
    file: it decides which samples are trained next."""
    problem = None
    if not isinstance(checkpoint.epoch, int) or checkpoint.epoch < 0:
        problem = f"epoch {checkpoint.epoch!r} is not a count from 0"
    elif not isinstance(checkpoint.step, int) or not (
        0 <= checkpoint.step < steps_per_epoch
    ):
        problem = (
            f"step {checkpoint.step!r} is outside an epoch of {steps_per_epoch} steps"
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
    elif not _best_fits(checkpoint.best, checkpoint.epoch):
        problem = f"its best-epoch record {checkpoint.best!r} does not fit its epochs"
    elif checkpoint.plan is not None and not (
        isinstance(checkpoint.plan, dict)
        and checkpoint.plan.get("kind") in ("scan", "unroll")
        and isinstance(checkpoint.plan.get("steps_per_call"), int)
        and checkpoint.plan["steps_per_call"] >= 1
    ):
        problem = f"its compilation record {checkpoint.plan!r} is not a plan"
    if problem:
        raise CheckpointError(f"--resume: {path} is inconsistent: {problem}")


def _best_fits(best: dict, epoch: int) -> bool:
    """monitoring.BestEpoch.state() of a run `epoch` epochs in."""
    if not isinstance(best, dict) or set(best) != set(BEST_KEYS):
        return False
    best_epoch, wait = best["best_epoch"], best["wait"]
    if best_epoch is None:
        return best["best"] is None and wait == 0 and best["stopped_early"] is False
    return (
        isinstance(best_epoch, int)
        and 0 <= best_epoch < epoch
        and isinstance(best["best"], int | float)
        and wait == epoch - 1 - best_epoch
        and isinstance(best["stopped_early"], bool)
    )


BEST_KEYS = ("monitor", "best", "best_epoch", "wait", "stopped_early")


class UnreadableCheckpoint(Exception):
    pass


# Settings a resume may change: the recipe is compared part by part, and more
# epochs continue a run unless its recipe depends on them (a schedule).
UNCOMPARED = ("recipe", "epochs")
# How a refusal names each setting: the flag, or what the digest is of.
SETTING_WORDS = {
    "batch_size": "--batch-size",
    "learning_rate": "--learning-rate",
    "seed": "--seed",
    "shuffle": "--no-shuffle",
    "monitor": "--monitor",
    "patience": "--patience",
    "train_data_sha256": "the training data",
    "validation_data_sha256": "the validation split (its data, or --validation-split)",
}


def setting_change(name: str, saved, now) -> str:
    """`--batch-size changed (32 -> 64)`, `the training data changed`."""
    words = SETTING_WORDS.get(name, name)
    if name.endswith("sha256"):
        return f"{words} changed"
    if name == "shuffle":
        return f"{words} {'given' if saved else 'left out'} now"

    def shown(value) -> str:
        return "none" if value is None else str(value)

    return f"{words} changed ({shown(saved)} -> {shown(now)})"


def run_settings(config: TrainConfig, data: Dataset) -> dict:
    """What a run's result depends on besides the code: resume must match it
    (but UNCOMPARED)."""
    return {
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "seed": config.seed,
        "shuffle": config.shuffle,
        "train_data_sha256": data.train.sha256(),
        "validation_data_sha256": data.val.sha256() if data.val else None,
        "monitor": config.monitor,
        "patience": config.patience,
    }


def resumed_line(path: Path, checkpoint: Checkpoint, config: TrainConfig, best) -> str:
    """What `--resume` says it found."""
    epochs = config.epochs
    if best.stopped_early or checkpoint.epoch >= epochs:
        why = "stopped early" if best.stopped_early else f"all {epochs} epochs done"
        return (
            f"Resuming from {path}: that run is finished ({why}); writing its "
            "outputs again, nothing more to train."
        )
    steps = config.steps_per_epoch(checkpoint.order.size)
    return (
        f"Resuming from {path}: epoch {checkpoint.epoch + 1} of {epochs}, after "
        f"step {checkpoint.step} of {steps}"
    )


def write(
    path: Path, checkpoint: Checkpoint, settings: dict, output: Path | None = None
) -> None:
    meta = {
        "output": None if output is None else str(output),
        "epoch": checkpoint.epoch,
        "step": checkpoint.step,
        "history": checkpoint.history,
        "settings": settings,
        "counts": [len(part) for part in checkpoint.state],
        "best": checkpoint.best,
        "best_weights": len(checkpoint.best_weights),
        "plan": checkpoint.plan,
    }
    arrays = {"meta": np.array(json.dumps(meta)), "order": checkpoint.order}
    for part, values in zip(STATE_PARTS, checkpoint.state, strict=True):
        for i, value in enumerate(values):
            arrays[f"{part}.{i}"] = value
    for i, value in enumerate(checkpoint.best_weights):
        arrays[f"best_weights.{i}"] = value
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
        # Absent from checkpoints of earlier versions, whose settings differ
        # anyway: check_compatible refuses them by name.
        best_weights = [
            arrays[f"best_weights.{i}"] for i in range(meta.get("best_weights", 0))
        ]
        checkpoint = Checkpoint(
            meta["epoch"],
            meta["step"],
            arrays["order"],
            meta["history"],
            state,
            meta.get("best", {}),
            best_weights,
            meta.get("plan"),
        )
        return checkpoint, meta["settings"]
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise UnreadableCheckpoint(f"{type(e).__name__}: {e}") from None
