"""`copier update` on a rendered project keeps the user's edits and brings the
template's changes; a real conflict is reported, never silently resolved."""

import os
import re
import shutil
import subprocess
import sys
import warnings

import copier
import edits
import pytest
from conftest import ROOT

from generator.render import render

GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}
ANSWERS = {"training_loop": "scratch", "metrics": "manual"}
CONFIG = "src/digits_classifier/config.py"
MODEL = "src/digits_classifier/model.py"
MARKER = re.compile(r"^<<<<<<< ", re.MULTILINE)


def git(cwd, *args):
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def edit(path, old, new):
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new))


@pytest.fixture
def versions(tmp_path):
    """A template repository tagged v1, and a project rendered from it, committed."""
    template = tmp_path / "template-repo"
    template.mkdir()
    shutil.copy(ROOT / "copier.yml", template)
    shutil.copytree(ROOT / "template", template / "template")
    git(template, "init", "-q", "-b", "main")
    commit_and_tag(template, "v1", "v1")
    return template, rendered_from_v1(template, tmp_path)


def commit_and_tag(repository, message, tag):
    git(repository, "add", "-A")
    git(repository, "commit", "-qm", message)
    git(repository, "tag", tag)


def rendered_from_v1(template, tmp_path):
    """A project rendered from the template's v1, committed in a repository."""
    project = render(ANSWERS, tmp_path / "project", template=template, vcs_ref="v1")
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "rendered from v1")
    return project


def release_v2(template):
    """The template changes the default number of epochs."""
    edit(
        template / "template/src/{{package_name}}/config.py.jinja",
        "    epochs: int = 20\n",
        "    epochs: int = 25\n",
    )
    git(template, "commit", "-qam", "v2: more epochs by default")
    git(template, "tag", "v2")


def update(project, conflict="inline"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copier.run_update(
            project,
            vcs_ref="v2",
            defaults=True,
            overwrite=True,
            quiet=True,
            conflict=conflict,
            unsafe=False,
            settings=copier.Settings(),
        )


def leftovers(project):
    files = [p for p in project.rglob("*") if p.is_file() and ".git" not in p.parts]
    # At a line's start: the README quotes the markers mid-line.
    markers = [p for p in files if MARKER.search(p.read_text(errors="ignore"))]
    return markers, [p for p in files if p.suffix == ".rej"]


def test_update_keeps_user_edits_and_brings_template_changes(versions):
    template, project = versions
    # The user edits the training code the way users do: a wider network.
    edit(
        project / MODEL,
        "hidden_units: tuple[int, ...] = (64, 64)",
        "hidden_units: tuple[int, ...] = (128, 64)",
    )
    git(project, "commit", "-qam", "wider network")
    release_v2(template)

    update(project)

    assert "(128, 64)" in (project / MODEL).read_text()
    assert "    epochs: int = 25\n" in (project / CONFIG).read_text()
    assert leftovers(project) == ([], [])
    assert "_commit: v2" in (project / ".copier-answers.yml").read_text()


@pytest.mark.parametrize("conflict", ["inline", "rej"])
def test_a_real_conflict_is_reported(versions, conflict):
    template, project = versions
    # The user changes the very line the template changes next.
    edit(project / CONFIG, "    epochs: int = 20\n", "    epochs: int = 30\n")
    git(project, "commit", "-qam", "train longer")
    release_v2(template)

    update(project, conflict=conflict)

    markers, rejects = leftovers(project)
    if conflict == "inline":
        assert [p.name for p in markers] == ["config.py"]
        text = (project / CONFIG).read_text()
        assert "epochs: int = 30" in text and "epochs: int = 25" in text
        # Copier says nothing and exits 0: the rendered README's way to find
        # them, and the marker labels it quotes, must hold.
        readme = (project / "README.md").read_text()
        assert "git grep -n '^<<<<<<< ' -- ." in readme
        found = subprocess.run(
            ["git", "grep", "-n", "^<<<<<<< ", "--", "."],
            cwd=project,
            capture_output=True,
            text=True,
        )
        assert found.stdout.startswith(CONFIG + ":"), found.stdout
        # Yours after "before updating", the template's after "=======".
        marks = [
            "<<<<<<< before updating",
            "epochs: int = 30",
            "=======",
            "epochs: int = 25",
            ">>>>>>> after updating",
        ]
        assert [text.index(mark) for mark in marks] == sorted(
            text.index(mark) for mark in marks
        )
        assert "`<<<<<<< before updating`" in readme
    else:
        assert [p.name for p in rejects] == ["config.py.rej"]


# The last template version whose package was one flat folder (before the
# machinery moved under machinery/ and the command line into cli/).
FLAT_LAYOUT = "a8c17577383f9b99ea7e60e242dbb2875c80a060"


@pytest.fixture
def from_flat_layout(tmp_path):
    """A template repository with the flat layout tagged v1 and this
    checkout's template tagged v2, and a project rendered from v1, committed."""
    known = subprocess.run(
        ["git", "cat-file", "-e", f"{FLAT_LAYOUT}^{{commit}}"], cwd=ROOT
    )
    if known.returncode != 0:
        pytest.skip(f"this clone lacks commit {FLAT_LAYOUT[:12]} (a shallow clone?)")
    template = tmp_path / "template-repo"
    template.mkdir()
    archive = subprocess.run(
        ["git", "archive", FLAT_LAYOUT, "copier.yml", "template"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x"], cwd=template, input=archive, check=True)
    git(template, "init", "-q", "-b", "main")
    commit_and_tag(template, "v1: flat layout", "v1")
    shutil.rmtree(template / "template")
    shutil.copy(ROOT / "copier.yml", template)
    shutil.copytree(ROOT / "template", template / "template")
    commit_and_tag(template, "v2: machinery/ and cli/", "v2")
    return rendered_from_v1(template, tmp_path)


def test_update_across_the_move_keeps_edits_to_model_py(from_flat_layout):
    # Promise (issue 24): a project rendered before the package was split into
    # yours and machinery/ updates to the split layout with its model.py
    # edits intact, the moved modules in their new places and none left in
    # the old, and it trains. On failure: look at which file copier left
    # behind or marked; a module that moved and was edited by the user is
    # the case copier cannot merge.
    project = from_flat_layout
    edits.apply(project / MODEL, edits.FIRST_EDITS)
    git(project, "commit", "-qam", "a CNN, AdamW, top-3 accuracy")

    update(project)

    merged = (project / MODEL).read_text()
    # Every edit kept, and the template's own changes to model.py since the
    # flat layout (the AUGMENT switch) merged in beside them.
    kept = [edits.CNN[1], edits.ADAMW_COSINE[1], 'name="top3"', edits.SMOOTHED_LOSS[1]]
    assert all(part in merged for part in kept), merged
    assert "AUGMENT = False" in merged
    assert leftovers(project) == ([], [])
    package = project / "src" / "digits_classifier"
    for moved in ("checkpoints.py", "compilation.py", "cli.py", "doctor.py"):
        assert not (package / moved).exists(), moved
    assert (package / "machinery" / "safety" / "checkpoints.py").is_file()
    assert (package / "cli" / "train.py").is_file()
    trained = subprocess.run(
        [sys.executable, "-m", "digits_classifier", "train", "--epochs", "1"]
        + ["--batch-size", "256", "--output", str(project / "out"), "--quiet"],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(project / "src"), "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
    )
    assert trained.returncode == 0, trained.stderr
    assert (project / "out" / "model.keras").is_file()
