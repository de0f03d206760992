"""Where runs write: a new directory per run under `runs/`, and `runs/latest`.

Each `train` without `--output` gets `runs/<YYYYmmdd-HHMMSS>` (a name that
sorts by time, `-2`, `-3`... after it when two runs start within a second),
so no run replaces another's files and `tensorboard --logdir runs` shows them
side by side. Once a run has written its outputs, the link `runs/latest`
points at its directory: scripts and the README name that one path.

Checkpoints name their run's directory, so that `--resume` continues writing
into the directory of the run it continues.

Kept free of Keras and JAX: the command line decides this before loading them.
"""

from __future__ import annotations

import json
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path("runs")
LATEST = ROOT / "latest"


def new_directory(root: Path = ROOT) -> Path:
    """A new, empty directory under `root`, named by the time."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        path = root / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{root}: no free name for a run started at {stamp}")


def for_resume(checkpoint_dir: Path | None) -> Path | None:
    """The output directory that the newest readable checkpoint in
    `checkpoint_dir` names (only its small `meta` member is read), if any."""
    if checkpoint_dir is None:
        return None
    for path in sorted(checkpoint_dir.glob("ckpt-*.npz"), reverse=True):
        try:
            with np.load(path, allow_pickle=False) as npz:
                output = json.loads(str(npz["meta"])).get("output")
        except (OSError, KeyError, ValueError, AttributeError, zipfile.BadZipFile):
            continue  # the resume itself says what is wrong with it
        return Path(output) if isinstance(output, str) else None
    return None


def is_latest_link(path: Path) -> bool:
    """True for `runs/latest` itself (writing there would overwrite the newest
    run's files through the link)."""
    return path.is_symlink() and path.absolute() == LATEST.absolute()


def point_latest(output: Path) -> None:
    """Points `runs/latest` at `output`, a run directory under `runs/`;
    leaves runs written elsewhere, and a real directory of that name (from
    an earlier version of the project), alone."""
    if output.absolute().parent != ROOT.absolute():
        return
    if LATEST.exists() and not LATEST.is_symlink():
        print(
            f"note: {LATEST} is a directory, not a link; it is left as it is "
            f"(this run is in {output})",
            file=sys.stderr,
        )
        return
    # A new link under a temporary name, renamed over the old one: the
    # link is never missing.
    tmp = ROOT / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(output.name, target_is_directory=True)
    os.replace(tmp, LATEST)


def discard_if_unused(path: Path) -> None:
    """Removes a run directory this run created, if nothing but its lock
    file was written there (a run refused before it started)."""
    try:
        entries = {entry.name for entry in path.iterdir()}
        if entries <= {".lock"}:
            for name in entries:
                (path / name).unlink()
            path.rmdir()
    except OSError:
        pass
