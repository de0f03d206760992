"""copier copy refuses bad answers with a message naming the problem; no --trust."""

import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

from generator.render import render


def copier_copy(tmp_path, *data):
    args = [sys.executable, "-m", "copier", "copy", "--defaults", "--vcs-ref", "HEAD"]
    for item in data:
        args += ["--data", item]
    dst = tmp_path / "dst"
    result = subprocess.run(
        [*args, str(ROOT), str(dst)], capture_output=True, text=True, timeout=120
    )
    return result, dst


BAD_ANSWERS = {
    "keyword": ("package_name=class", "'class' is a Python keyword"),
    "dependency": (
        "package_name=keras",
        "would shadow the standard-library module or dependency",
    ),
    "stdlib": (
        "package_name=json",
        "would shadow the standard-library module or dependency",
    ),
    "leading digit": ("package_name=1abc", "'1abc' is not a valid Python identifier"),
    "hyphen": ("package_name=my-model", "'my-model' is not a valid Python identifier"),
    "empty project": ("project_name=  ", "project_name must not be empty"),
    "unknown loop": ("training_loop=keras_fit", "keras_fit"),
    "unknown metrics": ("metrics=auto", "auto"),
}


@pytest.mark.parametrize(
    ("answer", "message"), list(BAD_ANSWERS.values()), ids=list(BAD_ANSWERS)
)
def test_bad_answers_are_refused(tmp_path, answer, message):
    result, dst = copier_copy(tmp_path, answer)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert message in output, output
    assert not (dst / "pyproject.toml").exists()


def test_package_name_defaults_from_project_name(tmp_path):
    result, dst = copier_copy(tmp_path, "project_name=My Fancy Model 2")
    assert result.returncode == 0, result.stderr
    assert (dst / "src" / "my_fancy_model_2" / "cli" / "__init__.py").is_file()


def test_no_unsafe_features_so_no_trust_needed(tmp_path):
    config = yaml.safe_load((ROOT / "copier.yml").read_text())
    assert not {"_tasks", "_migrations", "_jinja_extensions"} & set(config)
    # render() passes unsafe=False: Copier would refuse an unsafe template.
    assert (render({}, tmp_path / "p") / "pyproject.toml").is_file()
