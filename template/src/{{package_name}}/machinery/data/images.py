"""`convert IMAGES_DIR DIR`: a data directory from a folder of images.

The folder holds one subfolder per class, as Keras'
`image_dataset_from_directory` and torchvision's `ImageFolder` read it; or
`train/` and `test/` (and `val/`) folders of that shape. The classes are the
sorted names of the training class folders, and label `i` is the `i`-th name;
`class_names.json` in the data directory records them.

Pillow decodes every format it knows (JPEG, PNG, GIF, BMP, WebP, TIFF). Each
image is turned by its EXIF orientation, brought to one channel layout (8-bit
grayscale or RGB: palette, alpha, CMYK and 16-bit images included, as Keras'
`load_img` converts them) and resized, bilinearly, to one size. Pillow
parses headers and converts in Python, under the GIL, so the images are
decoded in processes forked from this one (threads where that is unsafe);
each writes its images' rows straight into the `.npy` files at their
offsets. Nothing holds more than a few images per worker: memory stays flat
whatever the number of images, and the files are the same, byte for byte,
whatever the number of workers.

As `convert` of an `.npz`, the directory is built under a temporary name and
checked before it takes its name: an interrupted or refused conversion leaves
nothing behind.
"""

from __future__ import annotations

import collections
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..safety.saving import require_free_space
from . import classes
from .convert import prepare_destination, take_name
from .splits import DataError

EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
# What operating systems leave in folders of pictures: never images.
SYSTEM_FILES = {"thumbs.db", "desktop.ini", "icon\r"}
SKIPPED = "skipped.txt"
SPLIT_FOLDERS = ("train", "val", "test")
GRAYSCALE_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
CHUNK = 32  # images per task: enough to amortize a task, few to keep memory flat


@dataclass
class Tree:
    """The images of a folder: per split, (path, label) in a fixed order."""

    classes: list[str]
    splits: dict[str, list[tuple[Path, int]]]
    empty: list[str] = field(default_factory=list)  # class folders with no file


@dataclass
class Written:
    """What a conversion wrote, for the command to report."""

    classes: list[str]
    counts: dict[str, int]  # images per split
    size: tuple[int, int]
    size_chosen: str  # why this size, in words
    channels: int
    skipped: list[str]
    empty: list[str]


def is_image(path: Path) -> bool:
    return path.suffix.lower() in EXTENSIONS


def scan(root: Path) -> Tree:
    """The class folders of `root` (or of its train/, val/ and test/)."""
    folders = {name: root / name for name in SPLIT_FOLDERS if (root / name).is_dir()}
    if "train" not in folders:
        if folders.keys() & {"test", "val"}:
            found = " and ".join(f"{name}/" for name in folders)
            raise DataError(f"{root}: has {found} but no train/")
        folders = {"train": root}
    per_split = {name: _class_folders(path) for name, path in folders.items()}
    files = {
        name: {cls: _files(folder) for cls, folder in class_folders.items()}
        for name, class_folders in per_split.items()
    }
    empty = sorted(cls for cls, found in files["train"].items() if not found)
    names = sorted(cls for cls, found in files["train"].items() if found)
    if len(names) < 2:
        what = f"one class only ({names[0]})" if names else "no class with images"
        raise DataError(
            f"{folders['train']}: {what}; a classifier needs a folder of images for "
            "each of at least two classes"
        )
    splits = {}
    for name, by_class in files.items():
        unknown = sorted(c for c, found in by_class.items() if found and c not in names)
        if unknown:
            raise DataError(
                f"{folders[name] / unknown[0]}: a class that {folders['train']} "
                "does not have"
            )
        splits[name] = [
            (path, label)
            for label, cls in enumerate(names)
            for path in by_class.get(cls, [])
        ]
    return Tree(names, splits, empty)


def _class_folders(folder: Path) -> dict[str, Path]:
    try:
        entries = sorted(folder.iterdir())
    except OSError as e:
        raise DataError(f"{folder}: cannot read it ({e.strerror or e})") from None
    loose = [p for p in entries if p.is_file() and not _ignored(p)]
    if loose:
        raise DataError(
            f"{loose[0]}: a file beside the class folders; put every image in the "
            "folder of its class"
        )
    return {p.name: p for p in entries if p.is_dir() and not _ignored(p)}


def _files(folder: Path) -> list[Path]:
    """Every file under a class folder (subfolders too), sorted; hidden ones
    and what operating systems leave there aside."""
    found = []
    for directory, subdirectories, names in os.walk(folder):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        found += [
            Path(directory) / name
            for name in sorted(names)
            if not _ignored(Path(directory) / name)
        ]
    return found


def _ignored(path: Path) -> bool:
    return path.name.startswith(".") or path.name.lower() in SYSTEM_FILES


def parse_size(text: str) -> tuple[int, int]:
    """ "64x48" -> (64, 48): height, width."""
    sides = text.lower().partition("x")[::2]
    if not all(side.isdigit() and 0 < int(side) <= 2**14 for side in sides):
        raise ValueError(f"expected HxW, e.g. 64x64, got {text!r}")
    height, width = map(int, sides)
    return height, width


def decode(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """One image as uint8 (height, width, channels); OSError/ValueError if it
    is not a readable image."""
    from PIL import Image, ImageOps

    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened)
        image.load()  # a truncated file fails here
    if image.mode in GRAYSCALE_MODES - {"1", "L", "LA"}:  # 16-bit, 32-bit, float
        wide = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or wide.max() > 255 else 255.0
        scaled = np.round(wide.clip(0, top) * (255 / top)).astype(np.uint8)
        image = Image.fromarray(scaled)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # as Pillow asks, before dropping alpha
    image = image.convert("L" if channels == 1 else "RGB")
    height, width = size
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8).reshape(height, width, channels)


def files_to_predict(path: Path) -> list[Path]:
    """The images `predict --data PATH` names: one file, or every image under a
    folder (sorted, hidden files aside)."""
    if path.is_file():
        return [path]
    found = [p for p in _files(path) if is_image(p)]
    if not found:
        raise DataError(
            f"{path}: no image files ({', '.join(sorted(EXTENSIONS))}) and no data "
            "directory (x_test.npy)"
        )
    return found


def decoded_batches(
    paths: list[Path], size: tuple[int, int], channels: int, batch: int, workers: int
) -> Iterator[np.ndarray]:
    """The images as uint8 (batch, height, width, channels) arrays, decoded by
    `workers` threads, a batch in memory at a time; a file that is no
    readable image is refused with its path."""

    def one(path: Path) -> np.ndarray:
        try:
            return decode(path, size, channels)
        except Exception as e:  # noqa: BLE001 (Pillow raises many kinds)
            raise DataError(f"{path}: not a readable image ({e})") from None

    with ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(paths), batch):
            yield np.stack(list(pool.map(one, paths[start : start + batch])))


def survey(paths: list[Path], workers: int) -> tuple[collections.Counter, bool, dict]:
    """Reads every image's header, not its pixels: (how many images have each
    (height, width) once turned upright, whether any is in color, the files
    that are no image at all: {path: why})."""
    sizes, color, bad = collections.Counter(), False, {}
    with _pool(workers) as pool:
        headers = pool.map(_header, paths, chunksize=CHUNK)
        for path, (size, in_color, why) in zip(paths, headers, strict=True):
            if why is not None:
                bad[path] = why
            else:
                sizes[size] += 1
                color |= in_color
    return sizes, color, bad


def _header(path: Path) -> tuple[tuple[int, int] | None, bool, str | None]:
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(0x0112) in (5, 6, 7, 8):  # turned 90 degrees
                width, height = height, width
            return (height, width), image.mode not in GRAYSCALE_MODES, None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        return None, False, str(e) or type(e).__name__


@contextlib.contextmanager
def _pool(workers: int) -> Iterator[Executor]:
    """Processes forked from this one, where that is safe: Pillow parses
    headers and converts modes in Python, under the GIL, so threads barely
    overlap on small images. Threads where JAX is loaded (its own threads make
    a fork unsafe): `predict`, and a conversion called from within a program
    that trains."""
    if (
        workers > 1
        and "fork" in mp.get_all_start_methods()
        and "jax" not in sys.modules
    ):
        executor = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"))
    else:
        executor = ThreadPoolExecutor(workers)
    with executor:
        yield executor


def convert_images(
    root: Path,
    destination: Path,
    check: Callable[[Path], object],
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
    test_split: float = 0.2,
    seed: int = 0,
    skip_bad: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> Written:
    """Writes the data directory of the image folder `root` (module docstring);
    `check` is data.py's check of a data directory, as for an `.npz`."""
    named = destination
    destination, parent = prepare_destination(destination)
    workers = workers or os.cpu_count() or 1
    tree = scan(root)
    every = [path for split in tree.splits.values() for path, _ in split]
    sizes, color, bad = survey(every, workers)
    if bad and not skip_bad:
        raise _refusal(bad)
    if not sizes:
        raise DataError(f"{root}: not one readable image ({len(bad)} bad files)")
    if image_size is None:
        image_size, count = sizes.most_common(1)[0]
        share = count / sum(sizes.values())
        size_chosen = f"the most common size, of {100 * share:.0f}% of the images"
    else:
        size_chosen = "--image-size"
    channels = channels or (3 if color else 1)
    splits = _arrange(tree, set(bad), test_split, seed, root)
    height, width = image_size
    needed = sum(len(rows) for rows in splits.values()) * height * width * channels
    require_free_space(parent, needed, str(destination), "the conversion", DataError)
    tmp = parent / f".{destination.name}.converting-{os.getpid()}"
    skipped = dict(bad)
    try:
        tmp.mkdir()
        counts = {}
        for name, rows in splits.items():
            found = _write_split(
                tmp, name, rows, image_size, channels, workers, skip_bad, progress
            )
            skipped.update(found)
            counts[name] = len(rows) - len(found)
        (tmp / classes.FILE).write_text(json.dumps(tree.classes, indent=1) + "\n")
        if skipped:
            listing = "".join(f"{p}\t{why}\n" for p, why in sorted(skipped.items()))
            (tmp / SKIPPED).write_text(listing)
        check(tmp)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{parent}: cannot write there ({e.strerror or e})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    take_name(tmp, destination, named)
    return Written(
        tree.classes,
        counts,
        image_size,
        size_chosen,
        channels,
        [f"{path} ({why})" for path, why in sorted(skipped.items())],
        tree.empty,
    )


def _refusal(bad: dict[Path, str]) -> DataError:
    path, why = min(bad.items())
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    return DataError(
        f"{path}: not a readable image ({why}){more}; --skip-bad leaves such files out"
    )


def _arrange(
    tree: Tree, bad: set[Path], test_split: float, seed: int, root: Path
) -> dict[str, list[tuple[Path, int]]]:
    """The rows of each split: training images in an order shuffled by
    `seed` (the validation split is the last of them, and must not be one
    class), the others by class and name. Without a test folder, the test
    split is `test_split` of each class's images, drawn by `seed`."""
    rng = np.random.default_rng(seed)
    splits = {
        name: [(p, label) for p, label in rows if p not in bad]
        for name, rows in tree.splits.items()
    }
    if "test" not in splits:
        by_class = collections.defaultdict(list)
        for row in splits["train"]:
            by_class[row[1]].append(row)
        train, test = [], []
        for label in range(len(tree.classes)):
            rows = by_class[label]
            held = set(rng.permutation(len(rows))[: round(len(rows) * test_split)])
            test += [row for i, row in enumerate(rows) if i in held]
            train += [row for i, row in enumerate(rows) if i not in held]
        if not test:
            raise DataError(
                f"{root}: --test-split {test_split:g} of {len(train)} images leaves "
                "no test image; raise it, or give the images a test/ folder"
            )
        splits["train"], splits["test"] = train, test
    train = splits["train"]
    splits["train"] = [train[i] for i in rng.permutation(len(train))]
    for name, rows in splits.items():
        if not rows:
            raise DataError(f"{root}: no readable image for the {name} split")
    return splits


def _write_split(
    directory: Path,
    name: str,
    rows: list[tuple[Path, int]],
    size: tuple[int, int],
    channels: int,
    workers: int,
    skip_bad: bool,
    progress: bool,
) -> dict[Path, str]:
    """x_<name>.npy and y_<name>.npy of `rows`; returns the images that could
    not be decoded (refused unless `skip_bad`, then left out)."""
    shape = (*size, channels)
    x_path = directory / f"x_{name}.npy"
    offset = _create(x_path, (len(rows), *shape))
    row_bytes = int(np.prod(shape))
    bad: dict[Path, str] = {}
    bar = _Progress(f"{name}: ", len(rows), progress)
    with _pool(workers) as pool:
        tasks = (
            (
                x_path,
                offset,
                row_bytes,
                start,
                rows[start : start + CHUNK],
                size,
                channels,
            )
            for start in range(0, len(rows), CHUNK)
        )
        for done, found in _bounded_map(pool, _decode_into, tasks, workers):
            bar.advance(done)
            bad.update(found)
            if bad and not skip_bad:
                pool.shutdown(cancel_futures=True)
                raise _refusal(bad)
    bar.close()
    labels = np.array([label for _, label in rows], dtype=np.int32)
    if bad:
        keep = np.array([path not in bad for path, _ in rows])
        _compact(x_path, offset, keep, row_bytes, (int(keep.sum()), *shape))
        labels = labels[keep]
    np.save(directory / f"y_{name}.npy", labels)
    return bad


def _decode_into(task) -> tuple[int, dict[Path, str]]:
    """Decodes a chunk of rows into their places in an .npy file; returns how
    many it handled and the files that were no readable image."""
    x_path, offset, row_bytes, start, chunk, size, channels = task
    bad = {}
    with open(x_path, "r+b") as out:
        for i, (path, _) in enumerate(chunk, start):
            try:
                pixels = decode(path, size, channels)
            except Exception as e:  # noqa: BLE001 (Pillow raises many kinds)
                bad[path] = str(e) or type(e).__name__
                continue
            os.pwrite(out.fileno(), pixels.tobytes(), offset + i * row_bytes)
    return len(chunk), bad


def _create(path: Path, shape: tuple[int, ...]) -> int:
    """An .npy file of uint8 zeros of this shape (sparse); returns where its
    data starts."""
    np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape).flush()
    with open(path, "rb") as f:
        np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f)
        return f.tell()


def _compact(path: Path, offset: int, keep, row_bytes: int, shape) -> None:
    """Rewrites the .npy at `path` with only the rows `keep` marks, a row at a time."""
    compacted = path.with_suffix(".compacting")
    new_offset = _create(compacted, shape)
    with open(path, "rb") as source, open(compacted, "r+b") as out:
        at = 0
        for i in np.flatnonzero(keep):
            row = os.pread(source.fileno(), row_bytes, offset + int(i) * row_bytes)
            os.pwrite(out.fileno(), row, new_offset + at * row_bytes)
            at += 1
    compacted.replace(path)


def _bounded_map(pool, function, items, workers: int) -> Iterator:
    """pool.map with at most 2 x workers tasks in flight, results in order."""
    pending = collections.deque()
    for item in items:
        pending.append(pool.submit(function, item))
        if len(pending) >= 2 * workers:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class _Progress:
    """ "train: 12,800/20,000 images (64%), 3,512 images/s" on stderr: redrawn
    in place on a terminal, a line every 10% elsewhere."""

    def __init__(self, label: str, total: int, enabled: bool):
        self.label, self.total, self.done = label, total, 0
        self.enabled = enabled and total > 0
        self.live = sys.stderr.isatty()
        self.start = self.shown_at = time.monotonic()
        self.shown_tenth = 0

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        tenth = 10 * self.done // max(self.total, 1)
        if not self.enabled:
            return
        if self.live and now - self.shown_at >= 0.2:
            self._show("\r", "")
        elif not self.live and tenth > self.shown_tenth:
            self.shown_tenth = tenth
            self._show("", "\n")

    def close(self) -> None:
        if self.enabled and self.live:
            self._show("\r", "\n")

    def _show(self, start: str, end: str) -> None:
        self.shown_at = now = time.monotonic()
        rate = self.done / max(now - self.start, 1e-9)
        print(
            f"{start}{self.label}{self.done:,}/{self.total:,} images "
            f"({100 * self.done / self.total:.0f}%), {rate:,.0f} images/s",
            end=end,
            file=sys.stderr,
            flush=True,
        )
