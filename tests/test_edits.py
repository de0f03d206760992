"""A user's first edits keep every promise (issue "Editable by design").

Projects of both loops get the edits of `edits.FIRST_EDITS` (a CNN with batch
normalization and dropout, AdamW with a cosine schedule over the run, a top-3
metric, a label-smoothed loss) and must then pass their own test suite and
lint, show the new metric everywhere, and refuse a resume after a further
edit, by name. Their tests must still catch real defects put back into them.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import edits
import pytest

from generator.matrix import by_id
from generator.render import render

# Both loops, and between them both metrics styles and every option.
EDITED = ["train_step-builtin", "scratch-manual-add_loss-sample_weights"]
PACKAGE = "digits_classifier"
TIMEOUT = 1800  # seconds for one project's whole suite, on a slow machine


@pytest.fixture(scope="module")
def edited(tmp_path_factory) -> Iterator[dict[str, Path]]:
    """{combination: a rendered project with the first edits applied}.

    The projects' processes share JAX's persistent compilation cache: their
    suites and the defect runs compile the same CNN steps again and again,
    which took a quarter of their time. A program changed by a defect has
    another cache key, so it is compiled anew.
    """
    root = tmp_path_factory.mktemp("edited")
    projects = {}
    for cid in EDITED:
        project = render(by_id(cid).data, root / cid)
        edits.apply(project / "src" / PACKAGE / "model.py", edits.FIRST_EDITS)
        edits.apply(project / "tests" / "conftest.py", [edits.MORE_LEARNING_EPOCHS])
        projects[cid] = project
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JAX_COMPILATION_CACHE_DIR", str(root / "jax-cache"))
        env.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        yield projects


def copy_of(project: Path, tmp_path: Path) -> Path:
    """A copy to edit further, leaving the shared edited project as it is."""
    return Path(shutil.copytree(project, tmp_path / project.name))


def run(project: Path, *args, timeout=TIMEOUT) -> subprocess.CompletedProcess:
    """A command in the project, importing its package from src/ (no install)."""
    env = {**os.environ, "PYTHONPATH": str(project / "src"), "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, *[str(a) for a in args]],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def pytest_in(project: Path, *args) -> subprocess.CompletedProcess:
    return run(project, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args)


def cli(project: Path, *args) -> subprocess.CompletedProcess:
    return run(project, "-m", PACKAGE, *args, timeout=600)


@pytest.mark.parametrize("cid", EDITED)
def test_an_edited_project_passes_its_own_suite_and_lint(edited, cid):
    project = edited[cid]
    for command in (["check"], ["format", "--check"]):
        lint = run(project, "-m", "ruff", *command, "--no-cache", ".")
        assert lint.returncode == 0, lint.stdout + lint.stderr
    # The tests that start several cooperating processes, stop training with
    # signals, inject faults or stream in processes of their own run in one
    # unedited combination per loop (noxfile's ONE_PER_LOOP): they do not
    # depend on model.py. The multiprocess ones run here too, with a defect,
    # below; kill -9 and resume run in full.
    result = pytest_in(
        project, "-m", "not (multiprocess or signals or faults or streaming or images)"
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


@pytest.mark.parametrize("cid", EDITED)
def test_augmentation_keeps_runs_reproducible_streamable_and_resumable(
    edited, cid, tmp_path, monkeypatch
):
    """Promise (issue 27): with model.py's AUGMENT on, Keras' random layers
    draw from state that the steps carry and checkpoints hold, so the same
    seed gives the same run, a streamed run equals one in memory, and kill -9
    then --resume ends bit for bit as an uninterrupted run, in both loops."""
    project = copy_of(edited[cid], tmp_path)
    edits.apply(project / "src" / PACKAGE / "model.py", [edits.AUGMENTATION_ON])
    promises = [
        "test_same_seed_same_result",
        "test_a_streamed_directory_trains_evaluates_and_predicts_as_its_file",
        "test_kill_9_at_random_steps_then_resume_ends_bit_identical",
    ]
    # Two kill points, not five: the kill -9 test's full run is test_edits'
    # own suite above; here it checks that the random layers' state resumes.
    monkeypatch.setenv("KILL_POINTS", "2")
    result = pytest_in(project, "tests", "-k", " or ".join(promises))
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert f"{len(promises)} passed" in result.stdout, result.stdout[-2000:]


@pytest.mark.parametrize("cid", EDITED)
def test_the_added_metric_is_everywhere_and_a_changed_run_is_refused(
    edited, cid, tmp_path
):
    project = copy_of(edited[cid], tmp_path)
    out, checkpoints = tmp_path / "out", tmp_path / "checkpoints"
    train = ["train", "--epochs", "2", "--output", out, "--checkpoint-dir", checkpoints]
    trained = cli(project, *train)
    assert trained.returncode == 0, trained.stderr
    assert "top3: " in trained.stdout and "val_top3: " in trained.stdout

    history = json.loads((out / "history.json").read_text())
    names = [name for name in history if not name.startswith("val_")]
    assert {"loss", "accuracy", "top3"} <= set(names)
    assert set(history) == {*names, *(f"val_{name}" for name in names)}
    header = (out / "history.csv").read_text().splitlines()[0].split(",")
    assert set(header) == {"epoch", *history}
    png = (out / "curves.png").read_bytes()
    assert struct.unpack(">II", png[16:24]) == (500 * len(names), 400)  # a panel each

    evaluated = cli(project, "evaluate", "--model", out / "model.keras", "--report")
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert set(result) == set(names)
    # evaluate reports the test split, as train did once at its end.
    recorded = json.loads((out / "run.json").read_text())["test"]
    assert result["top3"] == pytest.approx(recorded["top3"], rel=1e-5)

    model_py = project / "src" / PACKAGE / "model.py"
    original = model_py.read_text()
    refusals = [
        ([edits.BACK_TO_ADAM], [], "the optimizer changed since the checkpoint: "
         "AdamW -> Adam"),
        ([edits.WIDER_CONV], [], "the model changed since the checkpoint: "
         "layer 4 (Conv2D) filters: 16 -> 24"),
        # The cosine schedule spans the run, so --epochs is now part of it:
        # 41 steps an epoch (1,437 embedded digits less the 144 validating).
        ([], ["--epochs", "3"], "--epochs changed (2 -> 3), which the run uses; "
         "the optimizer changed since the checkpoint: learning_rate "
         "decay_steps: 82 -> 123"),
    ]  # fmt: skip
    for change, flags, message in refusals:
        edits.apply(model_py, change)
        resumed = cli(project, *train, "--resume", *flags)
        model_py.write_text(original)
        assert resumed.returncode == 2, resumed.stderr
        assert "Traceback" not in resumed.stderr
        assert message in resumed.stderr.strip().splitlines()[-1]
    resumed = cli(project, *train, "--resume")  # unchanged: nothing to refuse
    assert resumed.returncode == 0, resumed.stderr


# Defects put back into an edited project: (combination, file, edits, the
# tests that must catch it, what their failure must say).
PARALLEL = "tests/test_parallel.py"
DEFECTS = {
    "inference-mode-in-the-train-step": (
        "scratch-manual-add_loss-sample_weights",
        "training.py",
        [edits.INFERENCE_MODE_TRAINING],
        ["tests/test_training.py", "-k", "train_steps_train_and_evaluation"],
        "the train step ran the model without training=True",
    ),
    "processes-feed-different-samples": (
        "scratch-manual-add_loss-sample_weights",
        "machinery/execution/parallel.py",
        [
            (
                "host = np.asarray(value)",
                "host = np.roll(np.asarray(value), jax.process_index())",
            )
        ],
        [PARALLEL, "-k", "two_processes_of_two_devices"],
        "per epoch differs from the one-device run",
    ),
    "short-last-batch-split-like-a-full-one": (
        "train_step-builtin",
        "machinery/execution/parallel.py",
        [
            (
                "return self.split_rows if batch_size % self.size == 0 else",
                "return self.split_rows if True else",
            )
        ],
        [PARALLEL, "-k", "four_devices_train_like_one"],
        "status == 0",
    ),
    "resume-forgets-the-non-trainable-state": (
        "scratch-manual-add_loss-sample_weights",
        "training.py",
        [
            (
                "state, history = start.state, start.history",
                "state, history = (start.state[0], state[1], *start.state[2:]), "
                "start.history",
            )
        ],
        ["tests/test_checkpoints.py", "-k", "kill_9"],
        "resumed weights",
    ),
    "resume-restarts-the-epoch-metrics": (
        "train_step-builtin",
        "training.py",
        [("if self.resumed_metrics is not None:", "if False:")],
        ["tests/test_checkpoints.py", "-k", "kill_9"],
        "the resumed run's history differs",
    ),
}


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_the_edited_projects_tests_still_catch_the_defect(edited, tmp_path, defect):
    cid, name, changes, selection, message = DEFECTS[defect]
    project = copy_of(edited[cid], tmp_path)
    edits.apply(project / "src" / PACKAGE / name, changes)
    result = pytest_in(project, *selection)
    assert result.returncode == 1, result.stdout[-3000:]  # tests ran, and failed
    assert message in result.stdout, result.stdout[-3000:]
