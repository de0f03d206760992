"""`convert`: a data directory from a `.npz`, for streaming."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..machinery import PROJECT
from ..machinery.errors import UsageError


def add(commands) -> None:
    convert = commands.add_parser(
        "convert",
        help="write a data directory from a .npz, for streaming",
        description="Write the arrays of a .npz as .npy files in a new directory, "
        "which train, evaluate and predict --data stream from disk in bounded "
        "memory: for data too large to load whole.",
    )
    convert.set_defaults(command=run)
    convert.add_argument(
        "source", type=Path, metavar="FILE.npz", help="the .npz to read"
    )
    convert.add_argument(
        "destination", type=Path, metavar="DIR", help="the directory to create"
    )


def run(args: argparse.Namespace) -> int:
    if not args.source.is_file():
        raise UsageError(f"{args.source}: no such file")
    from ..data import convert

    written = convert(args.source, args.destination)
    print(f"Wrote {', '.join(written)} to {args.destination}")
    print(f"Train on it with: python -m {PROJECT} train --data {args.destination}")
    return 0
