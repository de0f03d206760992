"""One training run in a fresh process: `python -m benchmarks.worker ...`.

Prints one JSON line: the wall time of every epoch, each measured from the
previous epoch's end (the first from the start of the training call, so it
includes compiling), and the process's peak resident memory: all of it
(ru_maxrss, which counts the pages of a memory-mapped file that are resident)
and its anonymous part alone (RssAnon, sampled every 20 ms).

Every row ends each epoch on the host (its loss and validation results are
Python floats by then), so consecutive epoch ends bracket exactly one epoch.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402

N_TRAIN, N_TEST, SHAPE, CLASSES = 57_344, 1_024, (28, 28), 10
# README's first edit, as the lines it adds to build_model after `preprocess`.
README_CNN = (
    '    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)\n'
    "    x = layers.MaxPooling2D()(x)\n"
)
CNN_FILTERS = 32


def synthetic_mnist(n_train: int = N_TRAIN) -> dict[str, np.ndarray]:
    """MNIST-shaped raw pixels and labels; speed does not depend on the values."""
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n_train, *SHAPE), dtype=np.uint8),
        "y_train": rng.integers(0, CLASSES, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (N_TEST, *SHAPE), dtype=np.uint8),
        "y_test": rng.integers(0, CLASSES, N_TEST, dtype=np.uint8),
        "sample_weight_train": rng.uniform(0, 2, n_train).astype(np.float32),
    }


class EpochClock:
    """Collects the time of every epoch end; `seconds()` turns them into epochs."""

    def __init__(self):
        self.start = time.perf_counter()
        self.ends: list[float] = []

    def tick(self) -> None:
        self.ends.append(time.perf_counter())

    def seconds(self) -> list[float]:
        edges = [self.start, *self.ends]
        return [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]


class PeakAnonymousMemory:
    """The highest RssAnon of this process, sampled in a background thread."""

    def __init__(self, interval: float = 0.02):
        self.peak_kb = 0
        thread = threading.Thread(target=self._sample, args=(interval,), daemon=True)
        thread.start()

    def _sample(self, interval: float) -> None:
        while True:
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("RssAnon:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            time.sleep(interval)


def run_project(package: str, arrays, hidden, batch_size, epochs, cnn, extra: dict):
    """`cnn`: the package was rendered with README_CNN in its model.py.
    `arrays` may instead be a data directory's path, which the project streams.
    `extra` gets how the project compiled its steps (compilation.py)."""
    for module in ("config", "data", "model", "training"):
        importlib.import_module(f"{package}.{module}")
    pkg = importlib.import_module(package)
    # The decision a long run makes: measured even in these short runs (once
    # per bench: the cache in XDG_CACHE_HOME serves the later repeats).
    pkg.machinery.execution.compilation.SHORT_RUN_CALLS = 0
    pkg.machinery.execution.compilation.TRIAL_SHARE = float("inf")
    has_cnn = README_CNN in Path(pkg.model.__file__).read_text()
    if has_cnn != cnn:
        raise SystemExit(f"{package}: model.py {'has' if has_cnn else 'lacks'} the CNN")
    if isinstance(arrays, Path):
        data = pkg.data.load(arrays)
    else:
        # Validated on the test arrays, as stock fit() is below: the same work.
        val = {"x_val": arrays["x_test"], "y_val": arrays["y_test"]}
        data = pkg.data.from_arrays({**arrays, **val})
    model = pkg.model.build_model(
        data.input_shape,
        data.num_classes,
        **data.train.normalization_stats(),
        hidden_units=hidden,
    )
    config = pkg.config.TrainConfig(epochs=epochs, batch_size=batch_size, verbose=False)
    # Both loops end every epoch with Guard.after_epoch, after validation; the
    # wrapper times it without touching the project's code.
    guard = pkg.machinery.safety.checkpoints.Guard
    after_epoch = guard.after_epoch
    clock = EpochClock()

    def timed_after_epoch(self, *args, **kwargs):
        stop = after_epoch(self, *args, **kwargs)
        clock.tick()
        return stop

    guard.after_epoch = timed_after_epoch
    outcome = pkg.training.train(model, data, config)
    extra["compilation"] = outcome.compilation
    return clock.seconds()


def run_stock(arrays, hidden, batch_size, epochs, cnn: bool) -> list[float]:
    import keras

    x = arrays["x_train"].astype(np.float32)
    inputs = keras.Input(SHAPE)
    h = keras.layers.Normalization(axis=None, mean=x.mean(), variance=x.var())(inputs)
    h = keras.layers.Reshape((*SHAPE, 1))(h)
    if cnn:
        h = keras.layers.Conv2D(CNN_FILTERS, 3, padding="same", activation="relu")(h)
        h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    for units in hidden:
        h = keras.layers.Dense(units, activation="relu")(h)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES)(h))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    clock = EpochClock()
    tick = keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: clock.tick())
    model.fit(
        x,
        arrays["y_train"],
        batch_size=batch_size,
        epochs=epochs,
        validation_data=(arrays["x_test"].astype(np.float32), arrays["y_test"]),
        verbose=0,
        callbacks=[tick],
    )
    return clock.seconds()


def run_reference(arrays, hidden, batch_size, epochs, cnn: bool, unroll=0):
    from benchmarks import reference

    x = arrays["x_train"].astype(np.float32) / 255.0
    y = arrays["y_train"].astype(np.int32)
    clock = EpochClock()
    reference.train(
        x,
        y,
        hidden,
        batch_size,
        epochs,
        conv_filters=CNN_FILTERS if cnn else 0,
        on_epoch_end=clock.tick,
        unroll=unroll,
    )
    return clock.seconds()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--row", required=True, help="stock, reference, or a package")
    parser.add_argument("--src", help="the rendered project's src directory")
    parser.add_argument("--hidden", type=int, nargs="+", required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--samples", type=int, default=N_TRAIN, help="training rows")
    parser.add_argument("--cnn", action="store_true", help="README's CNN, not the MLP")
    parser.add_argument(
        "--unroll", type=int, default=0, help="reference: K unrolled steps a call"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="a data directory: a project streams it, stock fit() loads it",
    )
    args = parser.parse_args()
    memory = PeakAnonymousMemory()
    if args.data_dir is None:
        arrays = synthetic_mnist(args.samples)
    elif args.row == "stock":
        arrays = {p.stem: np.load(p) for p in args.data_dir.glob("*.npy")}
    else:
        arrays = args.data_dir
    shape = (tuple(args.hidden), args.batch_size, args.epochs, args.cnn)
    extra = {}
    if args.row == "stock":
        seconds = run_stock(arrays, *shape)
    elif args.row == "reference":
        seconds = run_reference(arrays, *shape, unroll=args.unroll)
    else:
        sys.path.insert(0, args.src)
        seconds = run_project(args.row, arrays, *shape, extra)
    if len(seconds) != args.epochs:
        raise SystemExit(f"timed {len(seconds)} epoch ends, expected {args.epochs}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    anon_mb = memory.peak_kb / 1024
    print(
        json.dumps(
            {
                "epoch_s": seconds,
                "peak_rss_mb": peak_mb,
                "peak_rss_anon_mb": anon_mb,
                **extra,
            }
        )
    )


if __name__ == "__main__":
    main()
