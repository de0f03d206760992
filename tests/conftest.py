import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generator.matrix import combinations  # noqa: E402
from generator.render import render  # noqa: E402

COMBINATIONS = combinations()


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> dict[str, Path]:
    """Every combination rendered once with default names: {id: project dir}."""
    root = tmp_path_factory.mktemp("rendered")
    return {c.id: render(c.data, root / c.id) for c in COMBINATIONS}
