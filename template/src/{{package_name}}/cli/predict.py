"""`predict`: a saved model's classes and probabilities, written to a file."""

from __future__ import annotations

import argparse
from pathlib import Path

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
    predict = commands.add_parser(
        "predict",
        help="write a model's predictions",
        description="Write a saved model's predicted classes and probabilities.",
    )
    predict.set_defaults(command=run)
    add_model(predict)
    add_data(predict)
    predict.add_argument(
        "--split",
        choices=("test", "train"),
        default="test",
        help="predict x_test or x_train (default: %(default)s)",
    )
    predict.add_argument(
        "--output",
        type=Path,
        default=Path("predictions.npz"),
        help="a .npz (arrays classes, probabilities) or .csv file (default: "
        "%(default)s)",
    )
    predict.add_argument(
        "--batch-size",
        type=int_at_least(1, maximum=MAX_COUNT),
        default=defaults.batch_size,
        help="samples per step (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    if args.output.suffix not in (".npz", ".csv"):
        raise UsageError(f"--output {args.output}: expected a .npz or .csv file name")
    if args.output.is_dir():
        raise UsageError(f"--output {args.output}: is a directory, not a file name")
    require_file("--model", args.model)
    require_data(args.data)
    from .. import data as data_lib

    # The data first: what numpy alone can check is refused before Keras and
    # JAX take seconds to load.
    x = data_lib.load_features(args.data, args.split)
    from ..machinery.execution import backend

    backend.start()
    import keras
    import numpy as np

    from ..machinery.execution import feeds
    from ..machinery.tracking import artifacts

    model = load_model(args.model)
    check_input_shape(model, x.shape[1:], data_lib.source_name(args.data))
    if not args.output.parent.is_dir():
        raise UsageError(f"--output {args.output}: no such directory")
    logits = feeds.predict_logits(model, x, args.batch_size)
    probabilities = np.asarray(keras.ops.softmax(logits, axis=-1), dtype=np.float32)
    artifacts.write_predictions(args.output, probabilities)
    print(f"Wrote predictions for {len(x)} samples to {args.output}")
    return 0
