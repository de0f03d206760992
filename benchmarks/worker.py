"""One timed training run in a fresh process: `python -m benchmarks.worker ...`.

Prints one JSON line: wall seconds of the training call (imports and data
generation excluded) and the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402

N_TRAIN, N_TEST, FEATURES, CLASSES = 57_344, 1_024, 784, 10


def synthetic_mnist() -> dict[str, np.ndarray]:
    """MNIST-shaped raw pixels and labels; speed does not depend on the values."""
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (N_TRAIN, FEATURES), dtype=np.uint8),
        "y_train": rng.integers(0, CLASSES, N_TRAIN, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (N_TEST, FEATURES), dtype=np.uint8),
        "y_test": rng.integers(0, CLASSES, N_TEST, dtype=np.uint8),
        "sample_weight_train": rng.uniform(0, 2, N_TRAIN).astype(np.float32),
    }


def run_project(package: str, arrays, hidden, batch_size, epochs) -> float:
    pkg = importlib.import_module(package)
    data = pkg.data.from_arrays(arrays)
    model = pkg.model.build_model(
        data.input_shape,
        data.num_classes,
        **data.train.normalization_stats(),
        hidden_units=hidden,
    )
    config = pkg.config.TrainConfig(epochs=epochs, batch_size=batch_size, verbose=False)
    start = time.perf_counter()
    pkg.training.train(model, data, config)
    return time.perf_counter() - start


def run_stock(arrays, hidden, batch_size, epochs) -> float:
    import keras

    x = arrays["x_train"].astype(np.float32)
    inputs = keras.Input((FEATURES,))
    h = keras.layers.Normalization(axis=None, mean=x.mean(), variance=x.var())(inputs)
    for units in hidden:
        h = keras.layers.Dense(units, activation="relu")(h)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES)(h))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(
        x,
        arrays["y_train"],
        batch_size=batch_size,
        epochs=epochs,
        validation_data=(arrays["x_test"].astype(np.float32), arrays["y_test"]),
        verbose=0,
    )
    return time.perf_counter() - start


def run_reference(arrays, hidden, batch_size, epochs) -> float:
    from benchmarks import reference

    x = arrays["x_train"].astype(np.float32) / 255.0
    y = arrays["y_train"].astype(np.int32)
    start = time.perf_counter()
    reference.train(x, y, hidden, batch_size, epochs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--row", required=True, help="stock, reference, or a package")
    parser.add_argument("--src", help="the rendered project's src directory")
    parser.add_argument("--hidden", type=int, nargs="+", required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--epochs", type=int, required=True)
    args = parser.parse_args()
    arrays = synthetic_mnist()
    shape = (tuple(args.hidden), args.batch_size, args.epochs)
    if args.row == "stock":
        seconds = run_stock(arrays, *shape)
    elif args.row == "reference":
        seconds = run_reference(arrays, *shape)
    else:
        sys.path.insert(0, args.src)
        seconds = run_project(args.row, arrays, *shape)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb}))


if __name__ == "__main__":
    main()
