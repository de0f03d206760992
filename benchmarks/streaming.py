"""Streaming from a data directory: memory and speed. `python -m benchmarks.streaming`.

Two tables, each row a fresh process (`benchmarks.worker`), printed and written
as JSON (`--output streaming.json`):

- memory: the peak anonymous memory (RssAnon: the process's own memory, not the
  page cache that a memory-mapped file fills) while training one epoch on
  generated directories of `--sizes` GB, for each loop. Flat as the data grows
  means streaming holds no more than a few batches.
- speed at MNIST shape, batch 256: each loop in memory and streamed from a
  directory of the same arrays, and stock fit() on them, side by side in every
  repeat, in rotated order; "x memory" is the median over repeats of a row's
  epoch time over the in-memory row's time of the same loop and repeat.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from generator.matrix import by_id
from generator.render import render

from .worker import N_TRAIN, synthetic_mnist

LOOPS = ["train_step-builtin", "scratch-builtin"]
HIDDEN = ["64", "64"]
BATCH_SIZE = 256
# The memory runs: samples of 64x64x3 bytes, so that gigabytes take a few
# hundred thousand samples (a few minutes an epoch on 2 cores), not millions.
BIG_SHAPE = (64, 64, 3)


def write_directory(directory: Path, n_train: int, shape, block: int = 8192) -> int:
    """A data directory of random uint8 samples, written a block at a time;
    returns its size in bytes."""
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", 2048)):
        x = np.lib.format.open_memmap(
            directory / f"x_{split}.npy", mode="w+", dtype=np.uint8, shape=(n, *shape)
        )
        for start in range(0, n, block):
            stop = min(start + block, n)
            x[start:stop] = rng.integers(0, 256, (stop - start, *shape), dtype=np.uint8)
        x.flush()
        del x
        np.save(directory / f"y_{split}.npy", rng.integers(0, 10, n, dtype=np.uint8))
    return sum(path.stat().st_size for path in directory.iterdir())


def worker(package: str, src: Path, data: Path | None, epochs: int, samples=N_TRAIN):
    command = [sys.executable, "-m", "benchmarks.worker", "--row", package]
    command += ["--src", str(src), "--hidden", *HIDDEN]
    command += ["--batch-size", str(BATCH_SIZE), "--epochs", str(epochs)]
    command += ["--samples", str(samples)]
    command += ["--data-dir", str(data)] if data else []
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{package} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def stock(data: Path, epochs: int) -> dict:
    command = [sys.executable, "-m", "benchmarks.worker", "--row", "stock"]
    command += ["--hidden", *HIDDEN, "--batch-size", str(BATCH_SIZE)]
    command += ["--epochs", str(epochs), "--data-dir", str(data)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"stock fit() failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=float, nargs="*", default=[3.0, 6.0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--output", type=Path, default=Path("streaming.json"))
    args = parser.parse_args()
    results = {"memory": [], "speed": []}

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        projects = {}
        for cid in LOOPS:
            package = "stream_" + cid.replace("-", "_")
            projects[cid] = (
                package,
                render({**by_id(cid).data, "package_name": package}, tmp / package)
                / "src",
            )

        # Speed: MNIST shape, the same arrays in memory and as a directory.
        mnist = tmp / "mnist"
        mnist.mkdir()
        for key, value in synthetic_mnist().items():
            if key != "sample_weight_train":
                np.save(mnist / f"{key}.npy", value)
        rows = [(cid, where) for cid in LOOPS for where in ("memory", "streamed")]
        rows.append(("stock fit()", "memory"))
        runs = {row: [] for row in rows}
        for repeat in range(args.repeats):
            shift = repeat % len(rows)
            for row in rows[shift:] + rows[:shift]:
                cid, where = row
                if cid == "stock fit()":
                    run = stock(mnist, args.epochs)
                else:
                    data = mnist if where == "streamed" else None
                    run = worker(*projects[cid], data, args.epochs)
                first, *rest = run["epoch_s"]
                runs[row].append(statistics.median(rest))
                print(
                    f"repeat {repeat + 1} {cid} {where}: {runs[row][-1]:.3f} s/epoch",
                    file=sys.stderr,
                )
        for (cid, where), epochs in runs.items():
            base = (
                runs[(LOOPS[0], "memory")]
                if cid == "stock fit()"
                else runs[(cid, "memory")]
            )
            ratios = [e / b for e, b in zip(epochs, base, strict=True)]
            results["speed"].append(
                {
                    "row": cid,
                    "data": where,
                    "epoch_s": statistics.median(epochs),
                    "samples_per_s": N_TRAIN / statistics.median(epochs),
                    "time_vs_in_memory": statistics.median(ratios),
                    "epoch_s_per_repeat": epochs,
                    "repeats": args.repeats,
                }
            )

        # Memory: one epoch on each generated size, each loop streaming.
        for gigabytes in args.sizes:
            n = int(gigabytes * 2**30 / np.prod(BIG_SHAPE))
            directory = tmp / f"big-{gigabytes:g}"
            size = write_directory(directory, n, BIG_SHAPE)
            for cid in LOOPS:
                run = worker(*projects[cid], directory, epochs=1, samples=n)
                results["memory"].append(
                    {
                        "row": cid,
                        "data_gb": size / 2**30,
                        "samples": n,
                        "peak_rss_anon_mb": run["peak_rss_anon_mb"],
                        "peak_rss_mb": run["peak_rss_mb"],
                        "epoch_s": run["epoch_s"][0],
                    }
                )
                print(
                    f"{gigabytes:g} GB {cid}: {run['peak_rss_anon_mb']:.0f} MB anon",
                    file=sys.stderr,
                )
            for path in directory.iterdir():
                path.unlink()

    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'row':<22} {'data':<9} {'samples/s':>10} {'x memory':>9}")
    for r in results["speed"]:
        print(
            f"{r['row']:<22} {r['data']:<9} {r['samples_per_s']:>10,.0f} "
            f"{r['time_vs_in_memory']:>9.2f}"
        )
    print()
    print(
        f"{'row':<22} {'data GB':>8} {'peak anon MB':>13} {'peak RSS MB':>12} "
        f"{'epoch s':>8}"
    )
    for r in results["memory"]:
        print(
            f"{r['row']:<22} {r['data_gb']:>8.2f} {r['peak_rss_anon_mb']:>13,.0f} "
            f"{r['peak_rss_mb']:>12,.0f} {r['epoch_s']:>8.1f}"
        )


if __name__ == "__main__":
    main()
