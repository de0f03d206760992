"""How long a training run takes to stop after SIGTERM: `python -m benchmarks.stops`.

A stop waits for the compiled call in flight, then writes a checkpoint. The
loops used to run 64 steps a call whatever the model; compilation.py now
sizes calls to about a second. For the template's MLP and for the README's
CNN, each started as a user would (`train --checkpoint-dir ... --epochs
500`), this sends SIGTERM at a random moment once training is under way and
times the exit, with calls pinned to 64 scanned steps (as before) and as
`--compile auto` decides. Prints a table, writes stops.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from generator.matrix import by_id
from generator.render import render

from .run import add_readme_cnn
from .worker import synthetic_mnist

ROWS = {  # name: (README's CNN, batch size, training samples)
    "MLP, batch 256": (False, 256, 65_536),
    "CNN, batch 256": (True, 256, 16_384),
}
WAYS = {"64 scanned steps a call (before)": "scan:64", "auto (after)": "auto"}


def stop_latency(package: str, src: Path, data: Path, batch: int, way: str, tmp):
    """Seconds from SIGTERM to the process's exit, once training is under way."""
    checkpoints = Path(tempfile.mkdtemp(dir=tmp))
    command = [sys.executable, "-m", package, "train", "--data", str(data)]
    command += ["--epochs", "500", "--batch-size", str(batch), "--quiet"]
    command += ["--checkpoint-dir", str(checkpoints), "--compile", way]
    command += ["--output", str(checkpoints / "out")]
    env = {**os.environ, "PYTHONPATH": str(src)}
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not list(checkpoints.glob("ckpt-*.npz")):  # the first epoch is done
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"{package} {way}: {process.stderr.read()[-2000:]}")
        time.sleep(0.05)
    time.sleep(random.uniform(0.5, 3.0))
    sent = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=600)
    return time.monotonic() - sent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("stops.json"))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")
        for name, (cnn, batch, samples) in ROWS.items():
            package = "stops_cnn" if cnn else "stops_mlp"
            answers = {**by_id("scratch-builtin").data, "package_name": package}
            project = render(answers, Path(tmp) / package)
            if cnn:
                add_readme_cnn(project / "src" / package / "model.py")
            data = Path(tmp) / f"{package}.npz"
            np.savez(data, **synthetic_mnist(samples))
            for way_name, way in WAYS.items():
                seconds = [
                    stop_latency(package, project / "src", data, batch, way, tmp)
                    for _ in range(args.repeats)
                ]
                results.append(
                    {
                        "row": name,
                        "way": way_name,
                        "median_s": statistics.median(seconds),
                        "max_s": max(seconds),
                        "seconds": seconds,
                    }
                )
                print(f"{name:<16} {way_name:<34} {seconds}", file=sys.stderr)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'row':<16} {'calls':<34} {'median s':>9} {'max s':>7}")
    for r in results:
        print(f"{r['row']:<16} {r['way']:<34} {r['median_s']:>9.2f} {r['max_s']:>7.2f}")
    print(f"\nSIGTERM to exit, {args.repeats} stops each; JSON in {args.output}")


if __name__ == "__main__":
    main()
