"""A run's outputs replaced as one set, with stop signals held meanwhile.

`model.keras`, `history.json`, `history.csv` and `curves.png` belong together:
an interruption must leave the earlier run's set or the new one, never a mix.
Saving goes in two phases:

1. Stage: every file is written in full under a temporary name beside its
   final one and flushed to disk. An interruption here leaves the old set;
   the temporaries are removed (now, or at the next run's start).
2. Commit: a journal naming the temporaries is written (atomically), the
   temporaries are renamed over the old files, and the journal is removed.
   Should the process die between two renames (kill -9, power loss), the next
   run's start finds the journal and finishes the renames: the new set.

SIGTERM and Ctrl-C are held from the end of training until the set is in
place, then reported; a second Ctrl-C abandons a save that has not begun to
commit, keeping the old set.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .. import PROJECT
from ..errors import Reported

JOURNAL = ".replacing.json"
# Tests set this to "staged:<file>", "replacing:<file>" or "temporary:<file>":
# the save then pauses once every file is staged, after the commit's first
# rename, or once a single file's temporary copy is written, with <file> in
# the output directory until the test removes it. It makes "stopped
# in the middle of the save" a deterministic test case.
PAUSE_VARIABLE = f"{PROJECT.upper()}_PAUSE_IN_SAVE"
# Read once, at import: os.umask can only be read by setting it.
UMASK = os.umask(0o022)
os.umask(UMASK)


class Stopped(Reported):
    """A stop signal before training ended: nothing was saved."""

    label = "stopped"

    def __init__(self, message: str, exit_status: int):
        super().__init__(message)
        self.exit_status = exit_status


class SignalsHeld:
    """SIGTERM and SIGINT, from `with` on: before `arm()`, they stop the run
    at once (the training loop installs its own handlers while it trains);
    after `arm()`, they wait until the block ends, where `received` names
    the first one."""

    def __init__(self):
        self.armed = False
        self.committing = False
        self.received: int | None = None
        self._previous = {}

    def __enter__(self) -> SignalsHeld:
        # Handlers can only be installed from the main thread; elsewhere the
        # signals keep their own behaviour.
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def arm(self) -> None:
        self.armed = True

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if not self.armed:
            raise Stopped(f"{name}: stopped; nothing saved", 128 + signum)
        if self.received == signal.SIGINT == signum and not self.committing:
            raise KeyboardInterrupt  # a second Ctrl-C: abandon the save
        self.received = self.received or signum
        print(
            f"\n{name} received: finishing the save first"
            + (" (Ctrl-C again to abandon it)" if signum == signal.SIGINT else ""),
            file=sys.stderr,
        )


def require_free_space(
    path: Path, needed: int, name: str, purpose: str, error: type[Exception]
) -> None:
    """Refuses a place with less than `needed` bytes free, before any work is
    spent on what would not fit there; `name` and `purpose` word the message:
    "NAME: 12.0 MB free, but PURPOSE needs about 30.0 MB there"."""
    free = shutil.disk_usage(path).free
    if free < needed:
        raise error(
            f"{name}: {_size(free)} free, but {purpose} needs about "
            f"{_size(needed)} there"
        )


def _size(nbytes: int) -> str:
    if nbytes < 2**30:
        return f"{nbytes / 2**20:,.1f} MB"
    return f"{nbytes / 2**30:,.2f} GB"


def replace_atomically(path: Path, write: Callable[[str], object]) -> None:
    """One file, replaced through a temporary file in the same directory.

    The data is flushed to disk before the rename, and the rename before
    returning: after a crash or power loss the path holds the old file or the
    new one, complete.
    """
    tmp = write_temporary(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def write_temporary(path: Path, write: Callable[[str], object]) -> Path:
    """`write(name)` to a new temporary file `.<name>.*` beside `path`,
    flushed to disk; returns it. On failure nothing is left, and an OSError
    (a full disk, say) names `path`, the file it was for."""
    # The temporary name adds about 12 bytes to the file's: a long name is
    # shortened first, since a name has at most 255 bytes.
    stem = os.fsdecode(os.fsencode(path.name)[:200])
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{stem}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        write(name)
        _pause_for_tests(path.parent, "temporary")
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp's 0600 is for the temporary name
        _fsync(tmp, os.O_RDONLY)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def save(
    output: Path,
    writers: dict[str, Callable[[str], object]],
    held: SignalsHeld | None = None,
) -> list[Path]:
    """Writes each `name: write(path)` as `output/name`, as one set."""
    staged = {}
    try:
        for name, write in writers.items():
            staged[name] = write_temporary(output / name, write)
        _pause_for_tests(output, "staged")
    except BaseException:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        raise
    if held is not None:
        held.committing = True
    renames = {tmp.name: name for name, tmp in staged.items()}
    replace_atomically(output / JOURNAL, lambda tmp: _write_json(tmp, renames))
    for i, (name, tmp) in enumerate(staged.items()):
        os.replace(tmp, output / name)
        if i == 0:
            _pause_for_tests(output, "replacing")
    _fsync_directory(output)
    (output / JOURNAL).unlink()
    _fsync_directory(output)
    return [output / name for name in writers]


def recover(output: Path, names) -> None:
    """At a run's start: finishes a commit that was cut short, and removes the
    temporaries of a save that never committed. Call it holding the lock."""
    journal = output / JOURNAL
    if journal.exists():
        for tmp, name in json.loads(journal.read_text()).items():
            if (output / tmp).exists():
                os.replace(output / tmp, output / name)
        _fsync_directory(output)
        journal.unlink()
    for pattern in [f".{name}.*" for name in names] + [f"{JOURNAL}.*"]:
        for leftover in output.glob(pattern):
            leftover.unlink(missing_ok=True)


def _write_json(path: str, value) -> None:
    with open(path, "w") as f:
        json.dump(value, f)


def _pause_for_tests(output: Path, point: str) -> None:
    where, _, marker = os.environ.get(PAUSE_VARIABLE, "").partition(":")
    if where != point or not marker:
        return
    (output / marker).touch()
    while (output / marker).exists():
        time.sleep(0.01)


def _fsync(path, flags: int) -> None:
    try:
        fd = os.open(path, flags)
    except OSError:
        return  # a directory cannot be opened on Windows; the rename still holds
    try:
        os.fsync(fd)
    except OSError:
        pass  # nor synced on some file systems
    finally:
        os.close(fd)


def _fsync_directory(path: Path) -> None:
    """Makes the renames in `path` durable."""
    _fsync(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
