"""Any project name Copier accepts renders a valid project that shows it as typed.

The name lands in a TOML string (pyproject.toml), a Python string (the
package's PROJECT_NAME, shown by --help) and a Markdown heading (README.md):
each escapes it its own way (copier.yml, `project_name_*`). The default
package_name derived from it must be a valid import name.
"""

import ast
import re
import subprocess
import sys
import tomllib
import zipfile

import pytest

from generator.render import render

# name: the package_name derived from it
NAMES = {
    'He said "hi" \\ C:\\new': "he_said_hi_c_new",  # quotes, backslash escapes
    "It's 'quoted' twice \"once\"": "it_s_quoted_twice_once",
    "Café Ünïcode Ærø Łódź": "cafe_unicode_aero_lodz",  # transliterated
    "3D Vision": "project_3d_vision",  # a leading digit gets a prefix
    "<b>*bold*</b> & [x](y) # | ~ `c` _u_ !": "b_bold_b_x_y_c_u",  # Markdown
    "Tab\there": "tab_here",  # a control character
    "数字の分類": "project",  # nothing ASCII left
}


@pytest.mark.parametrize("name", list(NAMES), ids=[str(i) for i in range(len(NAMES))])
def test_a_hostile_name_renders_a_valid_project(tmp_path, name):
    project = render({"project_name": name}, tmp_path / "p")
    package = NAMES[name]
    assert (project / "src" / package / "cli" / "__init__.py").is_file()

    # TOML: parses, and the description starts with the name as typed.
    metadata = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    assert metadata["description"].startswith(name + ": ")
    # Python: compiles, and PROJECT_NAME is the name as typed.
    init = (project / "src" / package / "__init__.py").read_text()
    assigned = {
        node.targets[0].id: node.value
        for node in ast.parse(init).body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    assert ast.literal_eval(assigned["PROJECT_NAME"]) == name
    # Markdown: unescaped, the heading is the name (control characters as spaces).
    heading = (project / "README.md").read_text().splitlines()[0]
    assert re.sub(r"\\(.)", r"\1", heading) == "# " + re.sub(r"[\x00-\x1f]", " ", name)

    # Lines that hold the package name grow with it: E501 is for the
    # default names (test_render.py); every other rule holds for any name.
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--extend-ignore"]
        + ["E501", str(project)],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout
    assert " ".join(name.split()) in help_text(project, package)


def help_text(project, package: str) -> str:
    """`python -m <package> --help` of a render, whitespace normalized
    (argparse rewraps the description)."""
    helped = subprocess.run(
        [sys.executable, "-m", package, "--help"],
        cwd=project,
        env={"PYTHONPATH": str(project / "src")},
        capture_output=True,
        text=True,
    )
    assert helped.returncode == 0, helped.stderr
    return " ".join(helped.stdout.split())


def test_a_hostile_name_builds_a_wheel_with_it(tmp_path):
    # What `pip install` does first: ask the build backend (hatchling, as
    # pyproject.toml names it) for a wheel, whose metadata holds the
    # description. Offline: hatchling is installed beside these tests.
    name = 'He said "hi" \\ C:\\new'
    project = render({"project_name": name}, tmp_path / "p")
    wheels = tmp_path / "wheel"
    built = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, hatchling.build as b; b.build_wheel(sys.argv[1])",
        ]
        + [str(wheels)],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("he_said_hi_c_new-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        info = next(n for n in archive.namelist() if n.endswith("METADATA"))
        assert f"Summary: {name}: a Keras 3" in archive.read(info).decode()


@pytest.mark.parametrize(
    ("name", "described"),
    [
        ("Digits Classifier", "use the Digits Classifier."),
        ("Flowers", "use the Flowers classifier."),
    ],
)
def test_help_names_the_project_once(tmp_path, name, described):
    """--help said "the Digits Classifier classifier" (issue 25, item 9)."""
    project = render({"project_name": name}, tmp_path / "p")
    package = next((project / "src").iterdir()).name
    text = help_text(project, package)
    assert described in text and "Classifier classifier" not in text
