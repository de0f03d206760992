"""JAX's start: the backend the environment asks for, or one line saying why not.

JAX reads its settings from the environment when it is imported, and starts
its backend at the first use of a device. A bad setting (`JAX_PLATFORMS=bogus`,
`JAX_ENABLE_X64=maybe`) or a backend asked for but not installed
(`JAX_PLATFORMS=cuda` without JAX's CUDA wheels) would otherwise end a command
in a traceback from deep inside JAX.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ..errors import Reported

SETTINGS = ("JAX_PLATFORMS", "JAX_ENABLE_X64")


class BackendError(Reported):
    """JAX cannot start with this environment."""


def start(join: Callable[[], None] | None = None) -> None:
    """Imports JAX, runs `join` (joining the run's processes must come before
    the backend starts), then starts the backend."""
    try:
        import jax

        if join is not None:
            join()
        jax.devices()
    except Reported:
        raise
    except (RuntimeError, ValueError, AssertionError, ImportError) as e:
        raise BackendError(describe(e)) from None


def describe(error: BaseException) -> str:
    """The error in one line, with the settings that led to it."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    set_here = [f"{name}={os.environ[name]}" for name in SETTINGS if name in os.environ]
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if not first and "cuda" in platforms:
        first = "no CUDA backend: are JAX's CUDA wheels installed? ('.[cuda]')"
    first = first or type(error).__name__
    settings = f" (with {', '.join(set_here)})" if set_here else ""
    return f"JAX cannot start{settings}: {first}"
