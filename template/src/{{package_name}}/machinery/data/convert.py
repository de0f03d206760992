"""`convert FILE.npz DIR`: a data directory from an `.npz`, in bounded memory.

Each array of an `.npz` is a complete `.npy` file inside a zip archive, so the
conversion copies each member out, decompressing it a megabyte at a time: no
array is ever held in memory, whatever its size. The directory is built under
a temporary name beside DIR, checked as `train --data DIR` would check it,
and only then renamed into place: an interrupted or refused conversion leaves
no DIR behind, and its temporary directory is removed by the next `convert`.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Callable, Collection
from pathlib import Path

from ..safety.saving import require_free_space
from .splits import DataError, check_sizes

COPY_CHUNK = 2**20


def convert(
    source: Path,
    destination: Path,
    known: Collection[str],
    check: Callable[[Path], object],
) -> list[str]:
    """Writes `destination`/<array>.npy for each array of `source` named in
    `known`, and calls `check` on the directory before it takes its name (the
    command passes data.py's: every check of `train --data DIR`); returns the
    names of the arrays written."""
    named = destination
    destination, parent = prepare_destination(destination)
    try:
        f = source.open("rb")
    except OSError as e:
        raise DataError(f"{source}: cannot read it ({e.strerror or e})") from None
    with f:
        try:
            check_sizes(f, str(source))
            f.seek(0)
            with zipfile.ZipFile(f) as archive:
                members = {
                    info.filename[: -len(".npy")]: info
                    for info in archive.infolist()
                    if info.filename[: -len(".npy")] in known
                }
                needed = sum(info.file_size for info in members.values())
                require_free_space(
                    parent, needed, str(destination), "the conversion", DataError
                )
                tmp = parent / f".{destination.name}.converting-{os.getpid()}"
                _build(archive, members, tmp, check)
        except DataError:
            raise
        except (zipfile.BadZipFile, EOFError, ValueError) as e:
            raise DataError(f"{source}: not a readable .npz file ({e})") from None
    take_name(tmp, destination, named)
    return sorted(members)


def prepare_destination(destination: Path) -> tuple[Path, Path]:
    """(the directory to create, its parent): refuses one that exists and
    is not empty, and removes what interrupted conversions to it left."""
    named = destination
    if destination.is_symlink():  # the directory it names takes the data
        destination = destination.resolve()
    if destination.exists() and not _is_empty_directory(destination):
        raise DataError(f"{named}: already exists; choose a new directory or remove it")
    parent = destination.absolute().parent
    if not parent.is_dir():
        raise DataError(f"{destination}: no such directory {parent}")
    _remove_leftovers(parent, destination.name)
    return destination, parent


def take_name(tmp: Path, destination: Path, named: Path) -> None:
    """Renames the finished directory `tmp` to `destination` (as `named`)."""
    try:
        if destination.exists():
            destination.rmdir()  # empty, checked above (or not empty now: below)
        tmp.rename(destination)
    except OSError:
        # Another conversion to the same directory finished first.
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(
            f"{named}: was written by another conversion meanwhile; this one "
            "wrote nothing"
        ) from None


def _build(archive: zipfile.ZipFile, members: dict, tmp: Path, check) -> None:
    """Copies each member to `tmp`/<name>.npy and checks the result; removes
    `tmp` again on any failure."""
    try:
        tmp.mkdir()
        for name, info in members.items():
            with archive.open(info) as member, (tmp / f"{name}.npy").open("wb") as out:
                shutil.copyfileobj(member, out, COPY_CHUNK)
        check(tmp)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(
            f"{tmp.parent}: cannot write there ({e.strerror or e})"
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _is_empty_directory(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _remove_leftovers(parent: Path, name: str) -> None:
    """Temporary directories of conversions to this name whose process is gone."""
    for leftover in parent.glob(f".{name}.converting-*"):
        pid = leftover.name.rpartition("-")[2]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
