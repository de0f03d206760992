"""One run at a time per directory: a lock on `--output` and `--checkpoint-dir`.

Two runs writing the same place would each replace the other's results and
checkpoints. Each run holds an exclusive `flock` on `<directory>/.lock` while
it trains and saves; a second run on the same place is refused, naming the
holder. The kernel releases the lock when its process ends, however it ends
(kill -9 included), so a stale lock cannot block anyone: the file stays, the
next run takes the lock over and writes itself in.

flock works between processes of one machine and, on most network file
systems, between machines.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from ..errors import Reported

NAME = ".lock"


class Busy(Reported):
    """Another run holds the directory: exit status 2, nothing written."""


@contextlib.contextmanager
def hold(*places: tuple[str, Path | None]) -> Iterator[None]:
    """Holds the lock of each (flag, directory) for the duration; a directory
    named twice (the same for both flags) is locked once."""
    with contextlib.ExitStack() as stack:
        held = set()
        for flag, directory in places:
            if directory is None or directory.resolve() in held:
                continue
            held.add(directory.resolve())
            stack.enter_context(_locked(flag, directory))
        yield


@contextlib.contextmanager
def _locked(flag: str, directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip()
            raise Busy(
                f"{flag} {directory}: another run is using it "
                f"({holder or 'holder unknown'}); wait for it to end or choose "
                "another directory"
            ) from None
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(
            fd, f"pid {os.getpid()} on {socket.gethostname()}, {started}\n".encode(), 0
        )
        yield
    finally:
        os.close(fd)  # releases the lock
