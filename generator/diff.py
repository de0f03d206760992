"""What one choice changes: the unified diff between two rendered combinations."""

from __future__ import annotations

import difflib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .matrix import Combination
from .render import render


def rendered_diff(a: Combination, b: Combination, context: int = 3) -> Iterator[str]:
    """Renders both (default names) and yields the diff lines, file by file."""
    with tempfile.TemporaryDirectory() as tmp:
        root_a = render(a.data, Path(tmp) / "a")
        root_b = render(b.data, Path(tmp) / "b")
        files = sorted(_files(root_a) | _files(root_b))
        for name in files:
            old, new = _lines(root_a / name), _lines(root_b / name)
            if old is None or new is None:  # binary: say so only if it differs
                if (root_a / name).read_bytes() != (root_b / name).read_bytes():
                    yield f"Binary files {a.id}/{name} and {b.id}/{name} differ\n"
                continue
            yield from difflib.unified_diff(
                old, new, f"{a.id}/{name}", f"{b.id}/{name}", n=context
            )


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _lines(path: Path) -> list[str] | None:
    if not path.exists():
        return []
    try:
        return path.read_text().splitlines(keepends=True)
    except UnicodeDecodeError:
        return None
