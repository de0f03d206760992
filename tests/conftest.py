import os
import sys
from pathlib import Path

# The oracle tests import keras directly; like the rendered projects, run on JAX.
os.environ["KERAS_BACKEND"] = "jax"

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


def pytest_terminal_summary(terminalreporter):
    """Prints the measured weight differences to stock fit(), for the record."""
    from test_oracle import FIGURE

    figures = sorted(
        value
        for report in terminalreporter.stats.get("passed", [])
        for name, value in getattr(report, "user_properties", [])
        if name == FIGURE
    )
    if figures:
        terminalreporter.section(FIGURE)
        for run, difference in figures:
            terminalreporter.write_line(f"{difference:.3g}  {run}")
