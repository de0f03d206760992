"""Class names: label `i` is `names[i]`.

A data directory records them in `class_names.json` (`convert` of an image
folder writes it); a run copies them into `model.keras`, as one more member
of its zip archive, which Keras' loader leaves alone; `evaluate --report` and
`predict` read them back from the model. Data without names has classes
0, 1, 2, ...
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from .splits import DataError

FILE = "class_names.json"


def read(data: Path | None) -> tuple[str, ...] | None:
    """The class names a data directory records; None where it records none."""
    if data is None or not (Path(data) / FILE).is_file():
        return None
    path = Path(data) / FILE
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable list of class names ({e})") from None
    return check(names, str(path))


def check(names, source: str) -> tuple[str, ...]:
    if not (
        isinstance(names, list)
        and len(names) >= 2
        and all(isinstance(name, str) and name for name in names)
    ):
        raise DataError(f"{source}: expected a JSON list of two or more class names")
    if len(set(names)) < len(names):
        raise DataError(f"{source}: names a class twice")
    return tuple(names)


def attach(model_file: str | Path, names: tuple[str, ...] | None) -> None:
    """Adds the names to a saved `.keras` archive."""
    if names is not None:
        with zipfile.ZipFile(model_file, "a") as archive:
            archive.writestr(FILE, json.dumps(list(names), ensure_ascii=False))


def of_model(model_file: Path) -> tuple[str, ...] | None:
    """The names a `.keras` archive carries, or None."""
    try:
        with zipfile.ZipFile(model_file) as archive:
            if FILE not in archive.namelist():
                return None
            names = json.loads(archive.read(FILE).decode("utf-8"))
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{model_file}: unreadable class names ({e})") from None
    return check(names, f"{model_file}: {FILE}")


def name(label: int, names: tuple[str, ...] | None) -> str:
    return names[label] if names is not None else str(label)
