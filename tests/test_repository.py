"""The repository's own promises: README commands, CI script, reserved names."""

import ast
import keyword
import re
import sys

import yaml
from conftest import ROOT

from generator.matrix import by_id


def readme_commands():
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [b.strip() for b in blocks]


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = next(c for c in readme_commands() if c.endswith("nox -t cpu"))
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


def test_readme_demo_command_runs_the_demo_session():
    assert any(c.endswith("nox -s demo") for c in readme_commands())


def test_reserved_names_cover_keywords_and_the_stdlib():
    config = yaml.safe_load((ROOT / "copier.yml").read_text())
    reserved = config["reserved_names"]["default"]
    assert set(keyword.kwlist) <= set(reserved["keywords"])
    stdlib = {name for name in sys.stdlib_module_names if not name.startswith("_")}
    assert stdlib <= set(reserved["modules"]), stdlib - set(reserved["modules"])
    assert {"keras", "jax", "jaxlib", "numpy", "pytest"} <= set(reserved["modules"])


def test_one_per_loop_tests_run_in_one_combination_of_each_loop():
    """nox runs the rendered `multiprocess` and `signals` tests in FULL_SUITE
    only: one combination per training loop, each of which must exist."""
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    [chosen] = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and getattr(node.targets[0], "id", None) == "FULL_SUITE"
    ]
    loops = sorted(by_id(cid).data["training_loop"] for cid in chosen)
    assert loops == ["scratch", "train_step"]
    [once_in] = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and getattr(node.targets[0], "id", None) == "ONCE_IN"
    ]
    assert once_in in chosen  # it runs the one-per-loop tests too
