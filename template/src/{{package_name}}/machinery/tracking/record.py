"""`run.json`: what produced a run's results, written beside them.

One JSON object per run: the command line and every resolved setting; the
versions of Python, JAX, Keras, NumPy and this project; the template version
and answers it was rendered with; the project's git commit and whether
tracked files differed from it; the devices and processes; the data's paths,
sizes and digests; when the run started and ended, and how it ended; the best
epoch; the last validation results, the kept epoch's, and the test split's.

A run that ends early (a stop signal, a loss that is no longer finite) writes
its record too, with how it ended. A resumed run's record names the
checkpoint it continued from.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import platform
import subprocess
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from ...config import TrainConfig
from .. import PROJECT

if TYPE_CHECKING:  # handed in, never imported: data.py is the user's
    from ...data import Dataset

NAME = "run.json"
TEMPLATE = "template.json"  # the Copier answers, rendered into the package
PACKAGES = ("jax", "jaxlib", "keras", "numpy")


class Record:
    """A run's record, filled in as the run goes."""

    def __init__(
        self, argv: list[str], started: float, config: TrainConfig, data_path, data
    ):
        self.started = started
        self.fields = {
            "command": ["python", "-m", PROJECT, *argv],
            "settings": _plain(dataclasses.asdict(config)),
            "seed": config.seed,
            "versions": versions(),
            "template": template(),
            "git": git_state(),
            "devices": devices(),
            "data": data_record(data_path, data),
            "started": _iso(self.started),
        }

    def finished(self, outcome, test: dict[str, float] | None) -> dict:
        """The record of a run whose training ended (`outcome`, monitoring.py)."""
        history = outcome.history
        val = {k: v[-1] for k, v in history.items() if k.startswith("val_")}
        best = outcome.best_epoch
        fields = {
            "ended": outcome.ended,
            "epochs_trained": len(next(iter(history.values()), [])),
            "resumed": outcome.resumed,
            "compilation": outcome.compilation,
            "monitor": outcome.monitor,
            "best_epoch": best,
            "kept": "the best epoch" if best else "the last epoch",
            "best_validation": (
                {k: v[best - 1] for k, v in history.items() if k.startswith("val_")}
                if best
                else None
            ),
            "final_validation": val or None,
            "test": test,
        }
        return self._close(fields)

    def stopped(self, how: str, message: str) -> dict:
        """The record of a run that ended before its outputs were written."""
        return self._close({"ended": how, "message": message})

    def _close(self, fields: dict) -> dict:
        ended = time.time()
        return {
            **self.fields,
            **fields,
            "finished": _iso(ended),
            "seconds": round(ended - self.started, 3),
        }


def to_json(record: dict) -> str:
    return json.dumps(record, indent=2) + "\n"


def versions() -> dict[str, str | None]:
    found = {"python": platform.python_version()}
    for name in (*PACKAGES, PROJECT):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None  # run from a source tree, not installed
    return found


def template() -> dict | None:
    """The Copier answers the project was rendered (or last updated) with;
    `_commit` is the template's version."""
    try:
        text = resources.files(PROJECT).joinpath(TEMPLATE).read_text()
        return json.loads(text)
    except (OSError, ValueError):
        return None


def git_state(places: list[Path] | None = None) -> dict | None:
    """The commit of the project's work tree, or None outside one: the first
    of `places` in a git work tree (default: the package's own directory in
    an editable install, then the current directory)."""
    if places is None:
        package = Path(__file__).resolve().parent
        installed = {"site-packages", "dist-packages"} & set(package.parts)
        places = [Path.cwd()] if installed else [package, Path.cwd()]
    for where in places:
        commit = _git(where, "rev-parse", "HEAD")
        if commit is None:
            continue
        changed = _git(where, "status", "--porcelain", "--untracked-files=no")
        return {
            "commit": commit,
            # Tracked files that differ from the commit: the code that ran is
            # not exactly the commit's.
            "dirty": bool(changed),
            "work_tree": _git(where, "rev-parse", "--show-toplevel"),
        }
    return None


def _git(where: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(where), *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None  # no git, or it hung
    return done.stdout.strip() if done.returncode == 0 else None


def devices() -> dict:
    import jax

    local = jax.local_devices()
    return {
        "backend": jax.default_backend(),
        "kinds": sorted({device.device_kind for device in local}),
        "local_devices": len(local),
        "devices": jax.device_count(),
        "processes": jax.process_count(),
    }


def data_record(path, data: Dataset) -> dict:
    """Paths, sizes and digests (those the checkpoints compare) of the splits
    that trained and validated; the test split's is added when it is used."""
    record = {
        "path": "embedded digits" if path is None else str(Path(path).absolute()),
        "train": split_record(data.train),
        "validation": None,
    }
    if data.val is not None:
        record["validation"] = {**split_record(data.val), "source": data.val_source}
    return record


def split_record(split) -> dict:
    return {
        "samples": len(split),
        "streamed": split.streamed,
        "sha256": split.sha256(),
    }


def _plain(value):
    return json.loads(json.dumps(value, default=str))


def _iso(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds).astimezone()
    return moment.isoformat(timespec="seconds")
