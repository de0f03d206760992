"""How fast `convert IMAGES_DIR DIR` turns a folder of JPEGs into a data
directory, and in how much memory: `python -m benchmarks.images`.

Generates a class-per-subfolder tree of `--images` JPEGs (64x64 by default,
10 classes), then converts it with one decoding thread and with one per
core, interleaved, `--repeats` times each, in fresh processes of the rendered
command line. Reports the median wall-clock time, images/s and the peak
resident memory of the converting process; a tree a tenth the size is
converted too, so that the two peaks show whether memory grows with the
number of images (it must not). Writes JSON (`--output`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from generator.render import render

PACKAGE = "digits_classifier"
CLASSES = 10


def write_tree(root: Path, images: int, size: int) -> None:
    """`images` JPEGs in CLASSES folders: smooth noise, as photos compress."""
    from PIL import Image

    def write(i: int) -> None:
        rng = np.random.default_rng(i)
        coarse = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        pixels = np.kron(coarse, np.ones((8, 8, 1), np.uint8))
        folder = root / f"class_{i % CLASSES}"
        Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=90)

    for label in range(CLASSES):
        (root / f"class_{label}").mkdir(parents=True)
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(write, range(images)))


# Runs the command line as `python -m` does, then records the peak memory of
# its process and of the largest of the worker processes it forked.
MEASURED = """
import json, resource, runpy, sys
sys.argv = ["-m", *sys.argv[2:]]
status = 0
try:
    runpy.run_module(%r, run_name="__main__", alter_sys=True)
except SystemExit as e:
    status = e.code
peaks = [resource.getrusage(who).ru_maxrss
         for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
with open(%r, "w") as f:
    json.dump({"status": status, "peaks_kb": peaks}, f)
"""


def convert(project: Path, tree: Path, workers: int, env: dict) -> dict:
    """One conversion in a fresh process: wall-clock seconds and peak RSS."""
    destination = tree.parent / f"data-{workers}"
    shutil.rmtree(destination, ignore_errors=True)
    report = tree.parent / "measured.json"
    code = MEASURED % (PACKAGE, str(report))
    command = [sys.executable, "-c", code, PACKAGE, "convert", str(tree)]
    command += [str(destination), "--workers", str(workers)]
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    measured = json.loads(report.read_text())
    if result.returncode != 0 or measured["status"] not in (0, None):
        raise SystemExit(f"convert failed: {result.stderr}")
    shutil.rmtree(destination)
    peak, largest_worker = (kb / 1024 for kb in measured["peaks_kb"])
    return {"s": seconds, "peak_rss_mb": peak, "worker_peak_rss_mb": largest_worker}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("images.json"))
    args = parser.parse_args()
    cores = os.cpu_count() or 1

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        project = render({}, tmp / "project")
        env = {**os.environ, "PYTHONPATH": str(project / "src")}
        env |= {"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
        trees = {}
        for images in (max(args.images // 10, CLASSES * 5), args.images):
            trees[images] = tmp / f"tree-{images}" / "images"
            started = time.perf_counter()
            write_tree(trees[images], images, args.size)
            took = time.perf_counter() - started
            print(f"wrote {images:,} JPEGs of {args.size}x{args.size} in {took:.1f} s")
        runs: dict[tuple[int, int], list[dict]] = {}
        for _ in range(args.repeats):
            for images, tree in trees.items():
                for workers in sorted({1, cores}):
                    run = convert(project, tree, workers, env)
                    runs.setdefault((images, workers), []).append(run)

    rows = []
    for (images, workers), measured in runs.items():
        seconds = statistics.median(run["s"] for run in measured)
        rows.append(
            {
                "images": images,
                "workers": workers,
                "median_s": seconds,
                "images_per_s": images / seconds,
                "peak_rss_mb": max(run["peak_rss_mb"] for run in measured),
                "worker_peak_rss_mb": max(
                    run["worker_peak_rss_mb"] for run in measured
                ),
                "runs": measured,
            }
        )
    by = {(row["images"], row["workers"]): row for row in rows}
    summary = {
        "cores": cores,
        "speedup_all_cores": by[(args.images, cores)]["images_per_s"]
        / by[(args.images, 1)]["images_per_s"],
        "peak_rss_ratio_10x_images": by[(args.images, cores)]["peak_rss_mb"]
        / by[(min(trees), cores)]["peak_rss_mb"],
    }
    args.output.write_text(json.dumps({"rows": rows, **summary}, indent=2) + "\n")
    print(
        f"\n{'images':>8} {'workers':>8} {'median s':>9} {'images/s':>9} {'peak MB':>8}"
    )
    for row in rows:
        print(
            f"{row['images']:>8,} {row['workers']:>8} {row['median_s']:>9.2f} "
            f"{row['images_per_s']:>9,.0f} {row['peak_rss_mb']:>8.0f} "
            f"{row['worker_peak_rss_mb']:>10.0f}"
        )
    print(
        f"\n{cores} workers: {summary['speedup_all_cores']:.2f}x the images/s of one; "
        f"peak memory for 10x the images: {summary['peak_rss_ratio_10x_images']:.2f}x"
    )
    print(
        f"medians over {args.repeats} runs (wall clock, process start included); "
        f"JSON in {args.output}"
    )


if __name__ == "__main__":
    main()
