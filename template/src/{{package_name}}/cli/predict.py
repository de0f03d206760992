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
        description="Write a saved model's predicted classes and probabilities, "
        "for a split of a data file or directory, or for image files (--data "
        "IMAGE or a folder of images, resized as convert resized the training "
        "images). Classes are named where the model carries names.",
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
    from ..machinery.data import images

    # The data first: what numpy alone can check is refused before Keras and
    # JAX take seconds to load.
    if args.data is not None and _names_images(args.data):
        x, files = None, images.files_to_predict(args.data)
    else:
        x, files = data_lib.load_features(args.data, args.split), None
    from ..machinery.execution import backend

    backend.start()
    import keras
    import numpy as np

    from ..machinery.data import classes
    from ..machinery.execution import feeds
    from ..machinery.tracking import artifacts

    model = load_model(args.model)
    if not args.output.parent.is_dir():
        raise UsageError(f"--output {args.output}: no such directory")
    if files is None:
        check_input_shape(model, x.shape[1:], data_lib.source_name(args.data))
        logits = feeds.predict_logits(model, x, args.batch_size)
    else:
        batches = _image_logits(model, args.model, files, args.batch_size)
        logits = np.concatenate(list(batches))
    probabilities = np.asarray(keras.ops.softmax(logits, axis=-1), dtype=np.float32)
    names = classes.of_model(args.model)
    shown = None if files is None else [str(path) for path in files]
    artifacts.write_predictions(args.output, probabilities, names, shown)
    print(f"Wrote predictions for {len(probabilities)} samples to {args.output}")
    return 0


def _names_images(path: Path) -> bool:
    """An image file, or a folder that is not a data directory."""
    from ..machinery.data import images

    if path.is_file():
        return images.is_image(path)
    return not any((path / f"x_{split}.npy").exists() for split in ("train", "test"))


def _image_logits(model, model_path: Path, files: list[Path], batch_size: int):
    """The model's logits for image files, decoded a batch at a time at the
    size and in the channels the model takes (as `convert` wrote its data)."""
    import os

    from ..machinery.data import images
    from ..machinery.execution import feeds

    shape = tuple(model.input_shape[1:])
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 3)):
        raise UsageError(
            f"--model {model_path}: takes samples of shape {shape}, not images "
            "(height, width) or (height, width, 1 or 3)"
        )
    channels = shape[2] if len(shape) == 3 else 1
    workers = os.cpu_count() or 1
    batches = images.decoded_batches(files, shape[:2], channels, batch_size, workers)
    for batch in batches:
        yield feeds.predict_logits(model, batch.reshape(len(batch), *shape), batch_size)
