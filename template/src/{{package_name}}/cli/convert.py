"""`convert`: a data directory from a `.npz` or from a folder of images."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..machinery import PROJECT
from ..machinery.errors import UsageError
from .common import fraction, int_at_least

MAX_WORKERS = 1024


def add(commands) -> None:
    convert = commands.add_parser(
        "convert",
        help="write a data directory from a .npz or a folder of images",
        description="Write the arrays of a .npz, or the images of a folder with one "
        "subfolder per class (or train/, test/ and val/ folders of that shape), as "
        ".npy files in a new directory, which train, evaluate and predict --data "
        "stream from disk in bounded memory. Images are decoded with Pillow (JPEG, "
        "PNG, GIF, BMP, WebP, TIFF), turned upright by their EXIF orientation and "
        "resized to one size; the class names are recorded.",
    )
    convert.set_defaults(command=run)
    convert.add_argument(
        "source",
        type=Path,
        metavar="SOURCE",
        help="a .npz file, or a folder of images",
    )
    convert.add_argument(
        "destination", type=Path, metavar="DIR", help="the directory to create"
    )
    images = convert.add_argument_group("images")
    images.add_argument(
        "--image-size",
        type=_size,
        metavar="HxW",
        help="height x width of every image, e.g. 64x64 (default: the most common "
        "size among the images)",
    )
    images.add_argument(
        "--channels",
        type=int,
        choices=(1, 3),
        help="1: grayscale, 3: RGB (default: 3 if any image is in color, else 1)",
    )
    images.add_argument(
        "--test-split",
        type=fraction,
        default=0.2,
        metavar="F",
        help="where the folder has no test/: the fraction of each class's images "
        "held out for testing (default: %(default)s)",
    )
    images.add_argument(
        "--seed",
        type=int_at_least(0, maximum=2**32 - 1),
        default=0,
        help="draws the test split and the training order (default: %(default)s)",
    )
    images.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out files that are not readable images, and list them in "
        "DIR/skipped.txt (default: refuse them)",
    )
    images.add_argument(
        "--workers",
        type=int_at_least(1, maximum=MAX_WORKERS),
        help="processes that decode images (default: one per core)",
    )


def run(args: argparse.Namespace) -> int:
    if args.source.is_dir():
        return _images(args)
    if not args.source.is_file():
        raise UsageError(f"{args.source}: no such file or directory")
    from ..data import convert

    written = convert(args.source, args.destination)
    print(f"Wrote {', '.join(written)} to {args.destination}")
    _next_step(args.destination)
    return 0


def _images(args: argparse.Namespace) -> int:
    from ..data import convert_images
    from ..machinery.data import images

    print(
        f"Converting the images of {args.source} ({args.workers or os.cpu_count()} "
        "workers)"
    )
    written = convert_images(
        args.source,
        args.destination,
        image_size=args.image_size,
        channels=args.channels,
        test_split=args.test_split,
        seed=args.seed,
        skip_bad=args.skip_bad,
        workers=args.workers,
    )
    height, width = written.size
    counts = ", ".join(f"{n:,} {split}" for split, n in written.counts.items())
    print(f"{len(written.classes)} classes: {', '.join(written.classes)}")
    for empty in written.empty:
        print(f"left out the empty class folder {empty}")
    print(
        f"image size {height}x{width} ({written.size_chosen}), {written.channels} "
        f"channel{'s' if written.channels > 1 else ''}"
    )
    if written.skipped:
        print(
            f"skipped {len(written.skipped)} bad file(s), listed in "
            f"{args.destination / images.SKIPPED}:"
        )
        for line in written.skipped[:10]:
            print(f"  {line}")
    print(f"Wrote {counts} images to {args.destination}")
    _next_step(args.destination)
    return 0


def _next_step(destination: Path) -> None:
    print(f"Train on it with: python -m {PROJECT} train --data {destination}")


def _size(text: str) -> tuple[int, int]:
    from ..machinery.data.images import parse_size

    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
