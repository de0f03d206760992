"""The generator's CLI: list shows the matrix with help texts, diff shows what a
choice changes, and the README's tour quotes real diff lines."""

import logging
import re
import subprocess
import sys

from conftest import ROOT

from generator.diff import rendered_diff
from generator.matrix import by_id
from generator.render import render


def generator(*args):
    result = subprocess.run(
        [sys.executable, "-m", "generator", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    return result


def test_list_shows_help_texts_and_the_matrix_table():
    result = generator("list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "training_loop: How the model is trained" in lines
    assert any(line.split()[:2] == ["scratch", "A"] for line in lines if line.strip())
    header = next(line for line in lines if line.startswith("id "))
    assert header.split() == [
        "id",
        "training_loop",
        "metrics",
        "add_loss",
        "sample_weights",
    ]
    row = next(line for line in lines if line.startswith("scratch-manual-add_loss "))
    assert row.split() == ["scratch-manual-add_loss", "scratch", "manual", "yes", "no"]


def test_diff_of_builtin_and_manual_metrics():
    diff = "".join(rendered_diff(by_id("scratch-builtin"), by_id("scratch-manual")))
    training = "scratch-manual/src/digits_classifier/training.py"
    assert f"+++ {training}\n" in diff
    assert '+        self.loss_tracker = keras.metrics.Mean(name="loss")\n' in diff
    assert "-            metrics=metrics,\n" in diff
    assert "+metrics: manual\n" in diff  # the answers file
    # Files the choice does not touch are not in the diff.
    assert "cli.py" not in diff and "data.py" not in diff


def test_diff_refuses_unknown_ids():
    result = generator("diff", "scratch-builtin", "scratch-fancy")
    assert result.returncode == 2
    assert "unknown combination 'scratch-fancy'" in result.stderr


def test_readme_tour_quotes_real_diff_lines():
    readme = (ROOT / "README.md").read_text()
    tour = readme[readme.index("## A tour") : readme.index("## What a rendered")]
    sections = re.findall(r"`diff (\S+)\s+(\S+)`\).*?```diff\n(.*?)```", tour, re.S)
    assert len(sections) == 3
    for a, b, snippet in sections:
        diff = set("".join(rendered_diff(by_id(a), by_id(b))).splitlines())
        for line in snippet.splitlines():
            if line != "...":
                assert line in diff, (a, b, line)


def test_rendering_logs_no_git_commands(tmp_path, caplog):
    """nox logs at DEBUG; Copier's plumbum logged each git command it ran."""
    with caplog.at_level(logging.DEBUG):
        render({}, tmp_path / "project")
    assert not [r for r in caplog.records if r.name.startswith("plumbum")]
    assert logging.getLogger("plumbum").level == logging.NOTSET  # restored
