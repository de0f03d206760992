"""Renders the variants, times every row in fresh processes, prints a table and
writes JSON: `python -m benchmarks.run [--repeats 5] [--output bench.json]`.

Each run trains for EPOCHS epochs and times every epoch in the process
(`benchmarks.worker`). The first epoch includes compiling and is reported on
its own; a run's epoch time is the median of the epochs after it.

This machine's speed drifts by 20% and more over minutes, so rows are
compared side by side: every repeat runs each row once, each in a fresh
process, in an order rotated from one repeat to the next, and a row's
"x ref" is the median over repeats of its time divided by the reference's
time in the same repeat. The spread column is (slowest - fastest repeat) /
median of a row's own epoch time, to show the noise those ratios ride on.

The reference is written three ways for the CNN (a scan over the epoch, one
step a call, and calls of 8 unrolled steps, which XLA's CPU backend runs a
convolution's gradient faster in), and "x ref" compares with the way whose
median is fastest: the best compilation for that model. The projects decide
theirs themselves (machinery/execution/compilation.py): the "plan" column
shows what they chose, "decision s" what deciding cost in the first repeat
(the later ones take it from the cache).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from generator.matrix import by_id
from generator.render import render

from .worker import N_TRAIN, README_CNN

VARIANTS = [
    "train_step-builtin",
    "train_step-manual",
    "train_step-manual-add_loss-sample_weights",
    "scratch-builtin",
    "scratch-manual",
    "scratch-manual-add_loss-sample_weights",
]
CONFIGS = {  # name: (hidden units, batch size, README's CNN in front, samples)
    "mlp-b32": ((64, 64), 32, False, N_TRAIN),
    "mlp-b256": ((64, 64), 256, False, N_TRAIN),
    "wide-b256": ((512, 512), 256, False, N_TRAIN),
    # On 2 CPU cores a CNN sample costs several hundred times an MLP sample:
    # 4,096 samples (about 1-2 s an epoch) keep a run near 20 seconds.
    "cnn-b64": ((64, 64), 64, True, 4_096),
    "cnn-b128": ((64, 64), 128, True, 4_096),
}


EPOCHS = 6  # the first compiles; the other five are timed
REFERENCE = "reference (jax+optax)"
# The reference's ways of compiling: (row name, worker --unroll); the CNN's
# rows try them all, the MLP's only the scan (unrolling costs dense nets).
REFERENCES = {
    REFERENCE: 0,
    "reference, 1 step a call": 1,
    "reference, 8 unrolled a call": 8,
}


def timed(row: str, src, hidden, batch_size, cnn, samples, unroll=0) -> dict:
    command = [sys.executable, "-m", "benchmarks.worker", "--row", row]
    command += ["--hidden", *map(str, hidden), "--batch-size", str(batch_size)]
    command += ["--epochs", str(EPOCHS), "--samples", str(samples)]
    command += (["--src", src] if src else []) + (["--cnn"] if cnn else [])
    command += ["--unroll", str(unroll)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{row} failed:\n{done.stderr[-3000:]}")
    run = json.loads(done.stdout.strip().splitlines()[-1])
    first, *rest = run["epoch_s"]
    return {
        "first_epoch_s": first,
        "epoch_s": statistics.median(rest),
        "peak_rss_mb": run["peak_rss_mb"],
        "compilation": run.get("compilation"),
    }


def add_readme_cnn(model_py: Path) -> None:
    """README's first edit: convolutions between `preprocess` and `Flatten`."""
    anchor = "    x = preprocess(inputs, mean, variance)\n"
    text = model_py.read_text()
    if anchor not in text:
        raise SystemExit(f"{model_py}: README's CNN edit no longer applies")
    model_py.write_text(text.replace(anchor, anchor + README_CNN))


def table_row(cells: list[str]) -> str:
    """Two left-aligned text columns, then right-aligned numbers."""
    widths = [10, 42, 10, 6, 7, 11, 8, 10, 10]
    return " ".join(
        cell.ljust(width) if i < 2 else cell.rjust(width)
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--variants", nargs="+", default=VARIANTS)
    parser.add_argument("--output", type=Path, default=Path("bench.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        # The projects' compilation caches start empty (compilation.py).
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")
        # row: (worker --row, --src, --unroll) for the MLP and for README's CNN
        rows = {
            name: {cnn: ("reference", None, unroll) for cnn in (False, True)}
            for name, unroll in REFERENCES.items()
        }
        rows["stock fit()"] = {False: ("stock", None), True: ("stock", None)}
        for cid in args.variants:
            rows[cid] = {}
            for cnn in (False, True):
                package = ("bench_cnn_" if cnn else "bench_") + cid.replace("-", "_")
                project = render(
                    {**by_id(cid).data, "package_name": package}, Path(tmp) / package
                )
                if cnn:
                    add_readme_cnn(project / "src" / package / "model.py")
                rows[cid][cnn] = (package, str(project / "src"))

        runs: dict[tuple[str, str], list[dict]] = {}
        names = list(rows)
        for repeat in range(args.repeats):
            for config in args.configs:
                hidden, batch_size, cnn, samples = CONFIGS[config]
                # Rotated, so that no row always runs first or after the same one.
                shift = repeat % len(names)
                for name in names[shift:] + names[:shift]:
                    if name in REFERENCES and REFERENCES[name] and not cnn:
                        continue  # the MLP's reference scans
                    row, src, *unroll = rows[name][cnn]
                    run = timed(row, src, hidden, batch_size, cnn, samples, *unroll)
                    runs.setdefault((config, name), []).append(run)
                    print(
                        f"repeat {repeat + 1}/{args.repeats} {config:<10} {name}: "
                        f"{run['epoch_s']:.3f} s/epoch",
                        file=sys.stderr,
                    )

    results = []
    for config in args.configs:
        # The reference's fastest way over all repeats (by median), compared
        # with in each repeat. Not the fastest in each repeat: the least of
        # three noisy times is lower than any one way's typical time, which
        # would make every row look slower than it is.
        ways = [runs[(config, name)] for name in REFERENCES if (config, name) in runs]
        reference = min(
            ways, key=lambda way: statistics.median(run["epoch_s"] for run in way)
        )
        for name in rows:
            if (config, name) not in runs:
                continue
            row_runs = runs[(config, name)]
            epochs = [r["epoch_s"] for r in row_runs]
            epoch = statistics.median(epochs)
            ratios = [
                r["epoch_s"] / ref["epoch_s"]
                for r, ref in zip(row_runs, reference, strict=True)
            ]
            results.append(
                {
                    "config": config,
                    "row": name,
                    "samples_per_s": CONFIGS[config][3] / epoch,
                    "epoch_s": epoch,
                    "epoch_s_per_repeat": epochs,
                    "spread": (max(epochs) - min(epochs)) / epoch,
                    "time_vs_reference": statistics.median(ratios),
                    "time_vs_reference_per_repeat": ratios,
                    "first_epoch_s": statistics.median(
                        r["first_epoch_s"] for r in row_runs
                    ),
                    "peak_rss_mb": max(r["peak_rss_mb"] for r in row_runs),
                    "repeats": len(epochs),
                    "compilation": [r["compilation"] for r in row_runs],
                }
            )
    args.output.write_text(json.dumps(results, indent=2) + "\n")

    header = ["config", "row", "samples/s", "x ref", "spread", "1st epoch s"]
    print(table_row([*header, "peak MB", "plan", "decision s"]))
    for r in results:
        plans = [p for p in r["compilation"] if p]
        plan = f"{plans[-1]['kind']}:{plans[-1]['steps_per_call']}" if plans else ""
        decision = f"{plans[0]['decision_seconds']:.2f}" if plans else ""
        print(
            table_row(
                [
                    r["config"],
                    r["row"],
                    f"{r['samples_per_s']:,.0f}",
                    f"{r['time_vs_reference']:.2f}",
                    f"{r['spread']:.0%}",
                    f"{r['first_epoch_s']:.2f}",
                    f"{r['peak_rss_mb']:.0f}",
                    plan,
                    decision,
                ]
            )
        )
    print(f"\nmedians over {args.repeats} repeats; JSON in {args.output}")


if __name__ == "__main__":
    main()
