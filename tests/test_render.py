"""Every combination renders a complete, lint-clean project with nothing unchosen."""

import re
import subprocess
import sys

import pytest
import yaml
from conftest import COMBINATIONS

from generator.matrix import by_id

PACKAGE = "src/digits_classifier"
EXPECTED_FILES = {
    ".copier-answers.yml",
    ".gitignore",
    "README.md",
    "noxfile.py",
    "pyproject.toml",
    f"{PACKAGE}/__init__.py",
    f"{PACKAGE}/__main__.py",
    f"{PACKAGE}/artifacts.py",
    f"{PACKAGE}/checkpoints.py",
    f"{PACKAGE}/cli.py",
    f"{PACKAGE}/compilation.py",
    f"{PACKAGE}/config.py",
    f"{PACKAGE}/convert.py",
    f"{PACKAGE}/data.py",
    f"{PACKAGE}/digits.npz",
    f"{PACKAGE}/doctor.py",
    f"{PACKAGE}/errors.py",
    f"{PACKAGE}/feeds.py",
    f"{PACKAGE}/fingerprint.py",
    f"{PACKAGE}/locks.py",
    f"{PACKAGE}/model.py",
    f"{PACKAGE}/monitoring.py",
    f"{PACKAGE}/parallel.py",
    f"{PACKAGE}/progress.py",
    f"{PACKAGE}/record.py",
    f"{PACKAGE}/runs.py",
    f"{PACKAGE}/saving.py",
    f"{PACKAGE}/stops.py",
    f"{PACKAGE}/template.json",
    f"{PACKAGE}/tensorboard.py",
    f"{PACKAGE}/training.py",
    "tests/conftest.py",
    "tests/test_checkpoints.py",
    "tests/test_cli.py",
    "tests/test_compilation.py",
    "tests/test_data.py",
    "tests/test_experiments.py",
    "tests/test_faults.py",
    "tests/test_parallel.py",
    "tests/test_training.py",
}
JINJA_RESIDUE = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}")

ids = [c.id for c in COMBINATIONS]


def text_files(project):
    return [p for p in project.rglob("*") if p.is_file() and p.suffix != ".npz"]


@pytest.mark.parametrize("cid", ids)
def test_complete_tree_and_answers(rendered, cid):
    project = rendered[cid]
    files = {str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()}
    assert files == EXPECTED_FILES
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    combination = by_id(cid)
    assert {k: answers[k] for k in combination.data} == combination.data
    assert answers["package_name"] == "digits_classifier"


@pytest.mark.parametrize("cid", ids)
def test_no_jinja_residue(rendered, cid):
    for path in text_files(rendered[cid]):
        text = path.read_text()
        # f-strings legitimately hold "{{" in Python; none of ours do.
        assert not JINJA_RESIDUE.search(text), path
        assert "\n\n\n\n" not in text, f"{path}: blank lines left by a Jinja block"


def test_every_render_is_ruff_clean(rendered):
    roots = [str(p) for p in rendered.values()]
    # --no-cache: leave the renders exactly as rendered for the other tests.
    for command in (["check"], ["format", "--check"]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--no-cache", *roots],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def source(project):
    return "\n".join(p.read_text() for p in (project / PACKAGE).glob("*.py"))


# For each answer, words that must appear when it is chosen and nowhere else.
MARKERS = {
    ("training_loop", "train_step"): [
        "def train_step(",
        "classifier.fit(",
        "class Classifier",
        "class LiveBar",
    ],
    ("training_loop", "scratch"): [
        "def _eval_step(",
        "class Trainer",
        "bar.update(step",
    ],
    ("metrics", "builtin"): ["_loss_tracker.update_state", "compute_metrics("],
    ("metrics", "manual"): [
        "self.loss_fn",
        "self.loss_tracker",
        "def loss_and_updates(",
    ],
    ("add_loss", True): ["self.add_loss(", "ActivityPenalty"],
    ("sample_weights", True): [
        "sample_weight,",
        "build_metrics(weighted=True)",
        "sample_weight_train",
    ],
}


@pytest.mark.parametrize("cid", ids)
def test_no_code_for_options_not_chosen(rendered, cid):
    code = source(rendered[cid])
    answers = by_id(cid).data
    for (question, value), words in MARKERS.items():
        for word in words:
            if answers[question] == value:
                assert word in code, (question, value, word)
            else:
                assert word not in code, (question, value, word)


@pytest.mark.parametrize("cid", ids)
def test_no_tensorflow_and_no_downloads(rendered, cid):
    # Defect 11 of the guides: tf.data for batching, MNIST from a download.
    for path in text_files(rendered[cid]):
        text = path.read_text()
        for word in ("tensorflow", "tf.data", "load_data(", "urllib", "http://"):
            assert word not in text, (path, word)


def test_first_contact_details(rendered):
    # Issue "First contact": what the README's own examples write is ignored
    # by git; the README says how to get nox and how `copier update` works.
    project = rendered["train_step-builtin"]
    ignored = (project / ".gitignore").read_text().splitlines()
    assert {"predictions.csv", "predictions.npz", "runs/"} <= set(ignored)
    readme = (project / "README.md").read_text()
    for phrase in ("pip install nox", "copier update --defaults", "--skip-answered"):
        assert phrase in readme, phrase
    cli = (project / PACKAGE / "cli.py").read_text()
    assert "train|evaluate|predict|convert|doctor" in cli.splitlines()[0]
