"""Renders the variants, times every row in fresh processes, prints a table and
writes JSON: `python -m benchmarks.run [--repeats 3] [--output bench.json]`.

Per-epoch time is (t[6 epochs] - t[1 epoch]) / 5, each from a fresh process,
so set-up cancels out. The processes share JAX's persistent compilation cache:
compiling once per row, in the first repeat, and loading the result after,
keeps compile-time jitter (a second or more here) out of the difference.
A first run of each row compiles and fills the cache; its time, compilation
included, is reported as the first-epoch time. Rows run interleaved in every
repeat, and medians over repeats are reported, so a noisy neighbour hurts all
rows alike.
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

from .worker import N_TRAIN

VARIANTS = [
    "train_step-builtin",
    "train_step-manual",
    "train_step-manual-add_loss-sample_weights",
    "scratch-builtin",
    "scratch-manual",
    "scratch-manual-add_loss-sample_weights",
]
CONFIGS = {  # name: (hidden units, batch size)
    "mlp-b32": ((64, 64), 32),
    "mlp-b256": ((64, 64), 256),
    "wide-b256": ((512, 512), 256),
}


LONG = 6  # epochs of the longer run


def timed(
    row: str, src: str | None, hidden, batch_size: int, epochs: int, cache: str
) -> dict:
    command = [sys.executable, "-m", "benchmarks.worker", "--row", row]
    command += ["--hidden", *map(str, hidden), "--batch-size", str(batch_size)]
    command += ["--epochs", str(epochs)] + (["--src", src] if src else [])
    env = {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": cache,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{row} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table_row(cells: list[str]) -> str:
    """Two left-aligned text columns, then right-aligned numbers."""
    widths = [10, 42, 10, 6, 11, 8]
    return " ".join(
        cell.ljust(width) if i < 2 else cell.rjust(width)
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--output", type=Path, default=Path("bench.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        rows = {
            "reference (jax+optax)": ("reference", None),
            "stock fit()": ("stock", None),
        }
        for cid in VARIANTS:
            package = "bench_" + cid.replace("-", "_")
            render({**by_id(cid).data, "package_name": package}, Path(tmp) / package)
            rows[cid] = (package, str(Path(tmp) / package / "src"))

        samples: dict[tuple[str, str], list[dict]] = {}
        first_epoch: dict[tuple[str, str], float] = {}
        for repeat in range(args.repeats):
            for config in args.configs:
                hidden, batch_size = CONFIGS[config]
                for name, (row, src) in rows.items():
                    cache = str(Path(tmp) / "jax-cache")
                    if repeat == 0:  # compiles, filling the cache for the runs after
                        warm_up = timed(row, src, hidden, batch_size, 1, cache)
                        first_epoch[(config, name)] = warm_up["seconds"]
                    one = timed(row, src, hidden, batch_size, 1, cache)
                    long = timed(row, src, hidden, batch_size, LONG, cache)
                    epoch = max((long["seconds"] - one["seconds"]) / (LONG - 1), 1e-9)
                    samples.setdefault((config, name), []).append(
                        {
                            "epoch_s": epoch,
                            "peak_rss_mb": max(one["peak_rss_mb"], long["peak_rss_mb"]),
                        }
                    )
                    print(
                        f"repeat {repeat + 1}/{args.repeats} {config:<10} {name}: "
                        f"{epoch:.3f} s/epoch",
                        file=sys.stderr,
                    )

    results = []
    for config in args.configs:
        reference = statistics.median(
            s["epoch_s"] for s in samples[(config, "reference (jax+optax)")]
        )
        for name in rows:
            runs = samples[(config, name)]
            epoch = statistics.median(r["epoch_s"] for r in runs)
            results.append(
                {
                    "config": config,
                    "row": name,
                    "samples_per_s": N_TRAIN / epoch,
                    "epoch_s": epoch,
                    "time_vs_reference": epoch / reference,
                    "first_epoch_s": first_epoch[(config, name)],
                    "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                    "repeats": len(runs),
                }
            )
    args.output.write_text(json.dumps(results, indent=2) + "\n")

    columns = ["config", "row", "samples/s", "x ref", "1st epoch s", "peak MB"]
    print(table_row(columns))
    for r in results:
        print(
            table_row(
                [
                    r["config"],
                    r["row"],
                    f"{r['samples_per_s']:,.0f}",
                    f"{r['time_vs_reference']:.2f}",
                    f"{r['first_epoch_s']:.2f}",
                    f"{r['peak_rss_mb']:.0f}",
                ]
            )
        )
    print(f"\nmedians over {args.repeats} repeats; JSON in {args.output}")


if __name__ == "__main__":
    main()
