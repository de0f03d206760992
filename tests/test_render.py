"""Every combination renders a complete, lint-clean project with nothing unchosen."""

import ast
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
    "launch/jobset.yaml",
    "launch/slurm.sbatch",
    "noxfile.py",
    "pyproject.toml",
    f"{PACKAGE}/__init__.py",
    f"{PACKAGE}/__main__.py",
    f"{PACKAGE}/config.py",
    f"{PACKAGE}/data.py",
    f"{PACKAGE}/digits.npz",
    f"{PACKAGE}/model.py",
    f"{PACKAGE}/template.json",
    f"{PACKAGE}/training.py",
    f"{PACKAGE}/cli/__init__.py",
    f"{PACKAGE}/cli/common.py",
    f"{PACKAGE}/cli/convert.py",
    f"{PACKAGE}/cli/doctor.py",
    f"{PACKAGE}/cli/evaluate.py",
    f"{PACKAGE}/cli/predict.py",
    f"{PACKAGE}/cli/train.py",
    f"{PACKAGE}/machinery/__init__.py",
    f"{PACKAGE}/machinery/errors.py",
    f"{PACKAGE}/machinery/data/__init__.py",
    f"{PACKAGE}/machinery/data/classes.py",
    f"{PACKAGE}/machinery/data/convert.py",
    f"{PACKAGE}/machinery/data/images.py",
    f"{PACKAGE}/machinery/data/splits.py",
    f"{PACKAGE}/machinery/execution/__init__.py",
    f"{PACKAGE}/machinery/execution/backend.py",
    f"{PACKAGE}/machinery/execution/compilation.py",
    f"{PACKAGE}/machinery/execution/feeds.py",
    f"{PACKAGE}/machinery/execution/launchers.py",
    f"{PACKAGE}/machinery/execution/parallel.py",
    f"{PACKAGE}/machinery/safety/__init__.py",
    f"{PACKAGE}/machinery/safety/checkpoints.py",
    f"{PACKAGE}/machinery/safety/fingerprint.py",
    f"{PACKAGE}/machinery/safety/locks.py",
    f"{PACKAGE}/machinery/safety/saving.py",
    f"{PACKAGE}/machinery/safety/stops.py",
    f"{PACKAGE}/machinery/tracking/__init__.py",
    f"{PACKAGE}/machinery/tracking/artifacts.py",
    f"{PACKAGE}/machinery/tracking/monitoring.py",
    f"{PACKAGE}/machinery/tracking/progress.py",
    f"{PACKAGE}/machinery/tracking/record.py",
    f"{PACKAGE}/machinery/tracking/runs.py",
    f"{PACKAGE}/machinery/tracking/tensorboard.py",
    "tests/conftest.py",
    "tests/test_checkpoints.py",
    "tests/test_cli.py",
    "tests/test_compilation.py",
    "tests/test_data.py",
    "tests/test_experiments.py",
    "tests/test_faults.py",
    "tests/test_images.py",
    "tests/test_launchers.py",
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


# The files of the package's top level a user edits; everything else is
# under machinery/ (issue 24).
YOURS = {
    "__init__.py",
    "__main__.py",
    "cli",
    "config.py",
    "data.py",
    "model.py",
    "training.py",
    "digits.npz",
    "template.json",
    "machinery",
}


def imports_from_the_top(module_path, package_dir):
    """(module imported, whether only for type checkers) for each import of
    `module_path` that leaves machinery/."""
    tree = ast.parse(module_path.read_text())
    depth = len(module_path.relative_to(package_dir).parts) - 1
    checking = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for statement in block.body
        for node in ast.walk(statement)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            up = node.level - 1
            if up < depth:
                continue  # within machinery/
            target = (node.module or "").split(".")[0] or node.names[0].name
            if target != "machinery":
                found.append((target, id(node) in checking))
    return found


@pytest.mark.parametrize("cid", [ids[0], ids[-1]])
def test_the_tree_shows_whose_each_file_is(rendered, cid):
    # Promise: the package's top level holds only what a user reads and
    # edits, and the machinery imports nothing of theirs but config.py (its
    # settings), with data.py's types for type checkers only: the model,
    # the steps and the data reach it as arguments. On failure: a module was
    # added at the top (move it under machinery/) or an import crept in.
    package = rendered[cid] / PACKAGE
    assert {p.name for p in package.iterdir()} == YOURS
    machinery = sorted((package / "machinery").rglob("*.py"))
    assert len(machinery) > 15
    for module in machinery:
        for target, type_only in imports_from_the_top(module, package):
            assert target == "config" or (target == "data" and type_only), (
                f"{module.relative_to(package)} imports {target}"
            )


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
    cli = (project / PACKAGE / "cli" / "__init__.py").read_text()
    assert "train|evaluate|predict|convert|doctor" in cli.splitlines()[0]
