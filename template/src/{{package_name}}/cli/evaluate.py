"""`evaluate`: a saved model's loss and metrics on the test split."""

from __future__ import annotations

import argparse
import json

from ..config import MAX_COUNT, TrainConfig
from ..machinery.errors import UsageError
from .common import (
    add_data,
    add_model,
    check_input_shape,
    int_at_least,
    load_model,
    require_data,
    require_file,
)


def add(commands, defaults: TrainConfig) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a saved model",
        description="Print a saved model's loss and metrics on x_test, y_test.",
    )
    evaluate.set_defaults(command=run)
    add_model(evaluate)
    add_data(evaluate)
    evaluate.add_argument(
        "--batch-size",
        type=int_at_least(1, maximum=MAX_COUNT),
        default=defaults.batch_size,
        help="samples per step; the results depend on it only through round-off, "
        "which a model trained with --precision bfloat16 shows in the last digits "
        "(default: %(default)s)",
    )
    evaluate.add_argument(
        "--report",
        action="store_true",
        help="also print per-class accuracy and the confusion matrix",
    )


def run(args: argparse.Namespace) -> int:
    require_file("--model", args.model)
    require_data(args.data)
    from .. import data as data_lib

    # The data first: what numpy alone can check is refused before Keras and
    # JAX take seconds to load.
    dataset = data_lib.load(args.data)
    source = data_lib.source_name(args.data)
    from ..machinery.execution import backend

    backend.start()
    import numpy as np

    from .. import training
    from ..machinery.data import classes
    from ..machinery.data.splits import check_labels
    from ..machinery.execution import feeds
    from ..machinery.tracking import artifacts

    model = load_model(args.model)
    check_input_shape(model, dataset.input_shape, source)
    check_labels(dataset.test.y, model.output_shape[-1], f"{source}: y_test")
    names = classes.of_model(args.model)
    if None not in (names, dataset.class_names) and names != dataset.class_names:
        raise UsageError(
            f"{source}: its classes ({', '.join(dataset.class_names)}) are not the "
            f"model's ({', '.join(names)})"
        )
    results = training.evaluate(model, dataset.test, args.batch_size)
    if args.report:
        logits = feeds.predict_logits(model, dataset.test.x, args.batch_size)
        counts = artifacts.confusion_matrix(
            dataset.test.y, np.argmax(logits, axis=-1), model.output_shape[-1]
        )
        print(artifacts.format_report(counts, names))
    # Last line: machine-readable, for scripts; the names are history.json's.
    results = {"loss": results.pop("loss"), **results}
    print(json.dumps({name: float(value) for name, value in results.items()}))
    return 0
