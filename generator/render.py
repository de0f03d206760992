"""Rendering one combination through Copier's Python API."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import copier

TEMPLATE_ROOT = Path(__file__).resolve().parent.parent


def render(
    data: dict[str, object],
    dst: Path,
    template: Path = TEMPLATE_ROOT,
    vcs_ref: str | None = None,
) -> Path:
    """Renders the template with `data` (other answers default) into `dst`.

    From a git checkout the working tree is rendered, uncommitted changes
    included (Copier's `--vcs-ref HEAD`), so tests see what is on disk. The
    user's own Copier settings (default answers, trusted repositories) are not
    read: a render depends on the template and `data` only.
    """
    if vcs_ref is None and (template / ".git").exists():
        vcs_ref = "HEAD"
    # Copier runs git through plumbum, which logs every command at DEBUG: under
    # nox (which logs at DEBUG) that was dozens of lines before each session.
    plumbum = logging.getLogger("plumbum")
    level = plumbum.level
    plumbum.setLevel(max(level, logging.INFO))
    with warnings.catch_warnings():
        # Copier warns that a dirty checkout is rendered; that is the point here.
        warnings.simplefilter("ignore")
        try:
            copier.run_copy(
                str(template),
                dst,
                data=dict(data),
                vcs_ref=vcs_ref,
                settings=copier.Settings(),
                defaults=True,
                overwrite=True,
                quiet=True,
                unsafe=False,
            )
        finally:
            plumbum.setLevel(level)
    return dst
