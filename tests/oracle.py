"""Trains a rendered project's own training code and stock `keras.Model.fit()` from
the same initial state on the same data, and compares the results.

Stock Keras is the reference SPEC.md names: the same functional graph (the
rendered model's layers), `compile(Adam(lr), SparseCategoricalCrossentropy(
from_logits=True), metrics=["accuracy"])`, `fit(shuffle=False)`, with
`sample_weight` and `weighted_metrics=["accuracy"]` when the variant has weights.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from pathlib import Path

import keras
import numpy as np

from generator.render import render

LEARNING_RATE = 3e-3
EPOCHS = 3
BATCH_SIZE = 32


@dataclasses.dataclass
class Result:
    weights: list[np.ndarray]  # trainable, in model order
    history: dict[str, list[float]]


def render_package(answers: dict, root: Path, package: str):
    """Renders a combination under its own import name and imports it."""
    project = render({**answers, "package_name": package}, root / package)
    sys.path.insert(0, str(project / "src"))
    return import_package(package)


def import_mutant(original: Path, package: str, root: Path, edits):
    """Copies a rendered package under a new name with `training.py` edited.

    `edits` is a list of (old, new) text replacements; each `old` must occur,
    so a mutation that no longer applies to the template fails loudly.
    """
    source = next((original / "src").iterdir())
    target = root / package / "src" / package
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file():
            text = path.read_bytes()
            if path.suffix == ".py":
                text = text.replace(source.name.encode(), package.encode())
            (target / path.name).write_bytes(text)
    training = target / "training.py"
    code = training.read_text()
    for old, new in edits:
        assert old in code, f"mutation no longer applies: {old!r}"
        code = code.replace(old, new)
    training.write_text(code)
    sys.path.insert(0, str(target.parent))
    return import_package(package)


def import_package(package: str):
    """The package with the modules used here (importing it loads only what
    `python -m` needs first)."""
    for module in ("config", "data", "model", "training"):
        importlib.import_module(f"{package}.{module}")
    return importlib.import_module(package)


def dataset(pkg, n_train: int, weighted: bool):
    arrays = pkg.data.read_arrays()
    arrays = {
        "x_train": arrays["x_train"][:n_train],
        "y_train": arrays["y_train"][:n_train],
        "x_test": arrays["x_test"][:50],
        "y_test": arrays["y_test"][:50],
    }
    if weighted:
        rng = np.random.default_rng(1)
        arrays["sample_weight_train"] = rng.uniform(0, 2, n_train).astype("float32")
    return pkg.data.from_arrays(arrays)


def build(pkg, data, dropout: float = 0.0, l2: float = 0.0) -> keras.Model:
    """The project's own model; with `dropout` or `l2`, the same MLP with a Dropout
    layer and an L2 kernel regularizer on its hidden layer."""
    keras.utils.set_random_seed(0)
    stats = data.train.normalization_stats()
    if not (dropout or l2):
        return pkg.model.build_model(data.input_shape, data.num_classes, **stats)
    layers = keras.layers
    inputs = keras.Input(shape=data.input_shape)
    x = layers.Normalization(axis=None, **stats)(layers.Flatten()(inputs))
    regularizer = keras.regularizers.L2(l2) if l2 else None
    x = layers.Dense(64, activation="relu", kernel_regularizer=regularizer)(x)
    if hasattr(pkg.model, "ActivityPenalty"):
        x = pkg.model.ActivityPenalty()(x)
    if dropout:
        x = layers.Dropout(dropout, seed=3)(x)
    outputs = layers.Dense(data.num_classes)(x)
    return keras.Model(inputs=inputs, outputs=outputs)


def train_ours(pkg, model, data) -> Result:
    config = pkg.config.TrainConfig(
        epochs=EPOCHS,
        batch_size=BATCH_SIZE,
        learning_rate=LEARNING_RATE,
        shuffle=False,
        verbose=False,
    )
    history = pkg.training.train(model, data, config)
    return Result([np.array(v) for v in model.trainable_variables], history)


def train_stock(model, initial, data, weighted: bool) -> Result:
    stock = keras.Model(inputs=model.inputs, outputs=model.outputs)
    for variable, value in zip(stock.variables, initial, strict=True):
        variable.assign(value)
    stock.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        weighted_metrics=["accuracy"] if weighted else None,
    )
    history = stock.fit(
        data.train.x,
        data.train.y,
        sample_weight=data.train.sample_weight if weighted else None,
        batch_size=BATCH_SIZE,
        epochs=EPOCHS,
        shuffle=False,
        validation_data=(data.test.x, data.test.y),
        verbose=0,
    ).history
    return Result([np.array(v) for v in stock.trainable_variables], history)


def relative_difference(ours: list, stock: list) -> float:
    """max over tensors of max|ours - stock| / max|stock|."""
    return max(
        float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))
        for a, b in zip(ours, stock, strict=True)
    )


def train_both(pkg, n_train, weighted, dropout: float = 0.0, l2: float = 0.0):
    """The project's training and stock fit(), from the same initial state."""
    data = dataset(pkg, n_train, weighted)
    model = build(pkg, data, dropout, l2)
    # All variables, not just weights: a Dropout layer's RNG state is one too.
    initial = [np.array(v) for v in model.variables]
    ours = train_ours(pkg, model, data)
    return ours, train_stock(model, initial, data, weighted)


def assert_agree(ours: Result, stock: Result) -> float:
    """Same history keys and values, weights within 1e-5; returns the difference."""
    assert set(ours.history) == set(stock.history), (ours.history, stock.history)
    for key, values in stock.history.items():
        np.testing.assert_allclose(ours.history[key], values, rtol=1e-5, err_msg=key)
    difference = relative_difference(ours.weights, stock.weights)
    assert difference <= 1e-5, f"weights differ from stock fit() by {difference:.3g}"
    return difference
