"""How fast the rendered command line answers: `python -m benchmarks.startup`.

A user's first contact is `--help`, a mistyped value or a wrong path; the
command line must answer those before it imports Keras and JAX (seconds).
Each row runs in fresh processes, interleaved, and reports the median
wall-clock time over `--repeats`; "import keras" is what the old command
line paid before answering anything.

`--template PATH` renders another checkout of the template instead (to
measure a version before and after a change). Writes JSON (`--output`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from generator.render import TEMPLATE_ROOT, render

PACKAGE = "digits_classifier"
ROWS = {
    "--help": ["-m", PACKAGE, "--help"],
    "train --help": ["-m", PACKAGE, "train", "--help"],
    "train --epochs x (bad value)": ["-m", PACKAGE, "train", "--epochs", "x"],
    "train --data absent.npz": ["-m", PACKAGE, "train", "--data", "absent.npz"],
    "evaluate --model absent.keras": ["-m", PACKAGE, "evaluate", "--model", "x.keras"],
    "python -c 'import keras'": ["-c", "import keras"],
}


def seconds(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], env=env, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--template", type=Path, default=TEMPLATE_ROOT)
    parser.add_argument("--output", type=Path, default=Path("startup.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        project = render({}, Path(tmp) / "project", template=args.template)
        env = {**os.environ, "PYTHONPATH": str(project / "src")}
        env |= {"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
        times: dict[str, list[float]] = {row: [] for row in ROWS}
        for _ in range(args.repeats):
            for row, argv in ROWS.items():
                times[row].append(seconds(argv, env))

    results = [
        {"row": row, "median_s": statistics.median(t), "runs_s": t}
        for row, t in times.items()
    ]
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'command':<32} {'median s':>9} {'fastest':>8} {'slowest':>8}")
    for r in results:
        runs = r["runs_s"]
        print(
            f"{r['row']:<32} {r['median_s']:>9.3f} {min(runs):>8.3f} {max(runs):>8.3f}"
        )
    print(f"\nmedians over {args.repeats} runs; JSON in {args.output}")


if __name__ == "__main__":
    main()
