"""Trains a rendered project's own training code and stock `keras.Model.fit()` from
the same initial state on the same data, and compares the results.

Stock Keras is the reference SPEC.md names: the same functional graph (the
rendered model's layers), `compile(Adam(lr), SparseCategoricalCrossentropy(
from_logits=True), metrics=["accuracy"])`, `fit(shuffle=False,
validation_split=F)`, with `sample_weight` and `weighted_metrics=["accuracy"]`
when the variant has weights, and `EarlyStopping(monitor, patience,
restore_best_weights=True)`: the project's model.keras keeps the best epoch's
weights, as that callback restores them.
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
VALIDATION_SPLIT = 0.1


@dataclasses.dataclass(frozen=True)
class Run:
    """What a comparison varies besides the combination."""

    n_train: int = 100
    dropout: float = 0.0
    l2: float = 0.0
    validation_split: float = VALIDATION_SPLIT
    epochs: int = EPOCHS
    monitor: str | None = None  # None: val_loss where there is validation
    patience: int | None = None
    compile: str = "auto"  # how the steps are compiled (compilation.py)


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
    """Copies a rendered package under a new name with `training.py` (or
    another module) edited.

    `edits` is a list of (old, new) text replacements; each `old` must occur,
    so a mutation that no longer applies to the template fails loudly.
    """
    source = next((original / "src").iterdir())
    target = root / package / "src" / package
    target.mkdir(parents=True)
    for path in source.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            text = path.read_bytes()
            if path.suffix == ".py":
                text = text.replace(source.name.encode(), package.encode())
            copy = target / path.relative_to(source)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(text)
    for edit in edits:
        # (old, new) edits training.py; (file, old, new) another module.
        name, old, new = edit if len(edit) == 3 else ("training.py", *edit)
        code = (target / name).read_text()
        assert old in code, f"mutation no longer applies to {name}: {old!r}"
        (target / name).write_text(code.replace(old, new))
    sys.path.insert(0, str(target.parent))
    return import_package(package)


def import_package(package: str):
    """The package with the modules used here (importing it loads only what
    `python -m` needs first)."""
    for module in ("config", "data", "model", "training"):
        importlib.import_module(f"{package}.{module}")
    return importlib.import_module(package)


def dataset(pkg, n_train: int, weighted: bool, validation_split=VALIDATION_SPLIT):
    arrays = file_arrays(pkg, n_train, weighted)
    return pkg.data.from_arrays(arrays, validation_split=validation_split)


def file_arrays(pkg, n_train: int, weighted: bool) -> dict[str, np.ndarray]:
    """A data file's arrays: the embedded digits' first samples."""
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
    return arrays


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


def train_ours(pkg, model, data, run: Run = Run()) -> Result:
    """The project's training; its model ends with the weights model.keras keeps."""
    config = pkg.config.TrainConfig(
        epochs=run.epochs,
        batch_size=BATCH_SIZE,
        learning_rate=LEARNING_RATE,
        shuffle=False,
        verbose=False,
        validation_split=run.validation_split,
        monitor=run.monitor,
        patience=run.patience,
        compile=run.compile,
    )
    outcome = pkg.training.train(model, data, config)
    return Result([np.array(v) for v in model.trainable_variables], outcome.history)


def train_stock(model, initial, arrays: dict, weighted: bool, run: Run = Run()):
    """Stock fit() on the file's training arrays, which it splits itself."""
    stock = keras.Model(inputs=model.inputs, outputs=model.outputs)
    for variable, value in zip(stock.variables, initial, strict=True):
        variable.assign(value)
    stock.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        weighted_metrics=["accuracy"] if weighted else None,
    )
    callbacks = []
    if run.validation_split:
        # Without patience the project still keeps the best epoch: a patience
        # longer than the run never stops it, and restores the best weights.
        callbacks.append(
            keras.callbacks.EarlyStopping(
                run.monitor or "val_loss",
                patience=run.epochs if run.patience is None else run.patience,
                restore_best_weights=True,
            )
        )
    history = stock.fit(
        arrays["x_train"],
        arrays["y_train"],
        sample_weight=arrays["sample_weight_train"] if weighted else None,
        batch_size=BATCH_SIZE,
        epochs=run.epochs,
        shuffle=False,
        validation_split=run.validation_split,
        callbacks=callbacks,
        verbose=0,
    ).history
    return Result([np.array(v) for v in stock.trainable_variables], history)


def relative_difference(ours: list, stock: list) -> float:
    """max over tensors of max|ours - stock| / max|stock|."""
    return max(
        float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))
        for a, b in zip(ours, stock, strict=True)
    )


def train_both(pkg, weighted: bool, run: Run = Run()):
    """The project's training and stock fit(), from the same initial state."""
    arrays = file_arrays(pkg, run.n_train, weighted)
    data = pkg.data.from_arrays(arrays, validation_split=run.validation_split)
    model = build(pkg, data, run.dropout, run.l2)
    # All variables, not just weights: a Dropout layer's RNG state is one too.
    initial = [np.array(v) for v in model.variables]
    ours = train_ours(pkg, model, data, run)
    return ours, train_stock(model, initial, arrays, weighted, run)


def assert_agree(ours: Result, stock: Result) -> float:
    """Same history keys and values, weights within 1e-5; returns the difference."""
    assert set(ours.history) == set(stock.history), (ours.history, stock.history)
    for key, values in stock.history.items():
        np.testing.assert_allclose(ours.history[key], values, rtol=1e-5, err_msg=key)
    difference = relative_difference(ours.weights, stock.weights)
    assert difference <= 1e-5, f"weights differ from stock fit() by {difference:.3g}"
    return difference
