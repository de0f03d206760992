"""`train`: its options, and the run from checked arguments to written files."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import MAX_COUNT, PRECISIONS, TrainConfig
from ..machinery import PROJECT
from ..machinery.errors import Reported, UsageError
from .common import (
    MAX_EPOCHS,
    add_data,
    add_devices_and_processes,
    compile_choice,
    fraction,
    int_at_least,
    join_processes,
    positive_float,
    require_data,
)

if TYPE_CHECKING:
    import keras


def add(commands, defaults: TrainConfig) -> None:
    train = commands.add_parser(
        "train", help="train and save a model", description="Train and save a model."
    )
    train.set_defaults(command=run)
    add_data(train)
    train.add_argument(
        "--epochs",
        type=int_at_least(0, maximum=MAX_EPOCHS),
        default=defaults.epochs,
        help="passes over the training samples (default: %(default)s)",
    )
    train.add_argument(
        "--batch-size",
        type=int_at_least(1, maximum=MAX_COUNT),
        default=defaults.batch_size,
        help="samples per training step, over all devices (default: %(default)s)",
    )
    train.add_argument(
        "--learning-rate",
        type=positive_float(),
        default=defaults.learning_rate,
        help="the optimizer's (peak) learning rate (default: %(default)s)",
    )
    train.add_argument(
        "--seed",
        type=int_at_least(0, maximum=2**32 - 1),
        default=defaults.seed,
        help="initial weights, sample order and dropout (default: %(default)s)",
    )
    train.add_argument(
        "--no-shuffle",
        dest="shuffle",
        action="store_false",
        help="train batches in file order (default: a new order every epoch)",
    )
    train.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=defaults.precision,
        help="bfloat16: compute in bfloat16, keep the weights in float32 (Keras' "
        "mixed_bfloat16 policy; faster on recent GPUs) (default: %(default)s)",
    )
    train.add_argument(
        "--output",
        type=Path,
        help="directory for model.keras, last.keras, the history, curves.png, "
        "run.json and TensorBoard events (default: a new directory under runs/, "
        "linked as runs/latest once written; with --resume, the resumed run's)",
    )
    train.add_argument(
        "--quiet", action="store_true", help="no progress output (default: shown)"
    )
    train.add_argument(
        "--compile",
        type=compile_choice,
        default=defaults.compile,
        metavar="auto|measure|scan:N|unroll:N",
        help="how a compiled call runs its steps: auto measures the model's ways "
        "at the start of a long enough run (once per model: the choice is cached) "
        "and sizes calls to about a second; measure does so whatever the run's "
        "length and the cache; scan:N or unroll:N pins it (default: %(default)s)",
    )
    train.add_argument(
        "--checkpoint-dir",
        type=Path,
        help="write a checkpoint here at every epoch end, kill-safe, the newest two "
        "kept (default: no checkpoints)",
    )
    train.add_argument(
        "--checkpoint-every",
        type=int_at_least(0, maximum=MAX_COUNT),
        default=0,
        metavar="STEPS",
        help="also checkpoint every STEPS training steps (default: 0, epoch ends only)",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest readable checkpoint in --checkpoint-dir",
    )
    add_experiment_options(train, defaults)
    add_devices_and_processes(train)


def add_experiment_options(train, defaults: TrainConfig) -> None:
    """The validation split, the kept epoch, early stopping."""
    experiment = train.add_argument_group(
        "validation and the kept epoch",
        "Validation is what training watches every epoch (val_* in the history); "
        "the test split is evaluated once, after training, on the kept model.",
    )
    experiment.add_argument(
        "--validation-split",
        type=fraction,
        default=defaults.validation_split,
        metavar="F",
        help="validate on the last fraction F of the training samples, taken "
        "before shuffling as fit(validation_split=F) takes it; 0: no validation; "
        "ignored for data with x_val and y_val (default: %(default)s)",
    )
    experiment.add_argument(
        "--monitor",
        metavar="NAME",
        help="the history key whose best epoch model.keras keeps (lower is better "
        "for a loss, higher for accuracy; last.keras keeps the last epoch) "
        "(default: val_loss, or the last epoch without validation)",
    )
    experiment.add_argument(
        "--patience",
        type=int_at_least(0, maximum=MAX_EPOCHS),
        metavar="N",
        help="stop after N epochs in a row without improvement of --monitor, as "
        "Keras' EarlyStopping(patience=N, restore_best_weights=True) "
        "(default: never)",
    )


def run(args: argparse.Namespace) -> int:
    # Everything that can be refused is checked before anything is written,
    # and what needs no Keras before Keras loads.
    if (args.resume or args.checkpoint_every) and args.checkpoint_dir is None:
        flag = "--resume" if args.resume else "--checkpoint-every"
        raise UsageError(f"{flag} needs --checkpoint-dir")
    require_data(args.data)
    from ..machinery.tracking import runs

    if args.output is not None and runs.is_latest_link(args.output):
        raise UsageError(
            f"--output {args.output}: is the link to the newest run; name a new "
            "directory (or leave --output out for one under runs/)"
        )
    from .. import data as data_lib

    # Bad data is refused before JAX and Keras take seconds to load: numpy
    # checks every array (every process reads the same file).
    dataset = data_lib.load(args.data, args.validation_split)
    from ..machinery.execution import backend

    backend.start(join=lambda: join_processes(args))
    from ..machinery.execution import parallel
    from ..machinery.safety import locks, saving
    from ..machinery.tracking import artifacts
    from ..machinery.tracking.monitoring import DEFAULT_MONITOR

    main_process = parallel.is_main_process()
    parallel.data_parallel(args.batch_size, args.devices)  # refused here, if at all
    if args.checkpoint_dir is not None:
        artifacts.require_writable_directory(
            args.checkpoint_dir, "--checkpoint-dir", UsageError
        )
    output, created = _output_directory(args, main_process)
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        shuffle=args.shuffle,
        verbose=not args.quiet and main_process,
        devices=args.devices,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        precision=args.precision,
        tensorboard_dir=output / "tensorboard" if main_process else None,
        output=output,
        validation_split=args.validation_split,
        # By default the best epoch by val_loss, where there is validation.
        monitor=args.monitor or (DEFAULT_MONITOR if dataset.val else None),
        patience=args.patience,
        compile=args.compile,
    )

    # Only process 0 writes files: it alone holds the directories, and so
    # alone may tidy what a cut-short earlier run left in them.
    places = [("--output", output), ("--checkpoint-dir", config.checkpoint_dir)]
    try:
        with (
            locks.hold(*(places if main_process else [])),
            saving.SignalsHeld() as held,
        ):
            if main_process:
                saving.recover(output, artifacts.RUN_FILES)
            written = _train_and_save(args, dataset, config, output, held)
    except Reported:
        if created:
            runs.discard_if_unused(output)
        raise
    if not main_process:
        return 0
    runs.point_latest(output)
    if not args.quiet:
        print("Wrote " + ", ".join(str(path) for path in written))
        print("Evaluate it with:")
        data = f" --data {args.data}" if args.data is not None else ""
        print(f"  python -m {PROJECT} evaluate --model {written[0]}{data} --report")
    if held.received is not None:
        name = signal.Signals(held.received).name
        print(
            f"stopped: {name} arrived while saving; the outputs are complete",
            file=sys.stderr,
        )
        # As for a stop with a checkpoint: SIGTERM's work was saved, a success.
        return 0 if held.received == signal.SIGTERM else 128 + held.received
    return 0


def _output_directory(args, main_process: bool) -> tuple[Path | None, bool]:
    """(the run's directory, whether this run created it): --output, else the resumed
    run's, else a new one under runs/ (machinery/tracking/runs.py). Only process 0
    writes there, so only process 0 has one (the others: None)."""
    from ..machinery.tracking import artifacts, runs

    if not main_process:
        return None, False
    output = args.output
    if output is None and args.resume:
        output = runs.for_resume(args.checkpoint_dir)
    if output is None:
        return runs.new_directory(), True
    created = not output.exists()
    artifacts.require_writable_directory(output, "--output", UsageError)
    return output, created


def _train_and_save(args, dataset, config: TrainConfig, output: Path, held) -> list:
    """Trains, evaluates the kept model on the test split once, and writes the
    run's files (process 0); returns their paths."""
    import jax

    from .. import training
    from ..machinery.execution import feeds, parallel
    from ..machinery.safety import saving
    from ..machinery.safety.checkpoints import Diverged
    from ..machinery.safety.stops import Interrupted, TrainingStopped
    from ..machinery.tracking import artifacts, record

    main_process = parallel.is_main_process()
    model = build_initial_model(dataset, config)
    if main_process:
        # model.keras and last.keras hold the weights; twice each, for the old
        # ones too.
        weights = sum(v.value.nbytes for v in model.weights)
        saving.require_free_space(
            output, 4 * weights + 2**20, f"--output {output}", "this run", UsageError
        )
    run = record.Record(args.argv, args.started, config, args.data, dataset)
    try:
        outcome = training.train(model, dataset, config)
    except TrainingStopped as e:
        if main_process:
            how = {Interrupted: "stopped by a signal", Diverged: "diverged"}
            artifacts.write_text(
                output / record.NAME,
                record.to_json(run.stopped(how.get(type(e), "stopped"), str(e))),
            )
        raise
    held.arm()  # from here, a stop signal waits for the outputs to be in place
    if dataset.streamed and jax.process_count() > 1 and not args.quiet:
        read = feeds.SAMPLES_READ[dataset.train.x.filename]
        print(
            f"Process {jax.process_index()} read {read:,} training samples, "
            f"its devices' share of {len(dataset.train) * config.epochs:,}"
        )
    if not main_process:
        return []  # every process holds the same model; process 0 writes it
    test = None
    if outcome.history:
        test = training.evaluate(model, dataset.test, config.batch_size)
        test = {"loss": test.pop("loss"), **test}
        if not args.quiet:
            print(test_line(outcome, test))
    fields = run.finished(outcome, test)
    fields["data"]["test"] = record.split_record(dataset.test)
    if dataset.class_names is not None:
        fields["data"]["class_names"] = list(dataset.class_names)
    return artifacts.save_run(output, model, outcome, fields, held, dataset.class_names)


def test_line(outcome, test: dict[str, float]) -> str:
    """The one line that reports the test split."""
    if outcome.best_epoch is not None:
        kept = f"epoch {outcome.best_epoch}, best {outcome.monitor}"
    else:
        kept = "the last epoch"
    if outcome.stopped_early:
        kept += "; stopped early"
    values = " - ".join(f"{name}: {value:.4f}" for name, value in test.items())
    return f"Test ({kept}): {values}"


def build_initial_model(dataset, config: TrainConfig) -> keras.Model:
    """model.py's model for this data, with the run's seed and precision."""
    import keras

    from ..model import build_model

    # Same seed, same initial weights (and, with --no-shuffle, the same result).
    keras.utils.set_random_seed(config.seed)
    # Layers take the dtype policy in force when they are built: --precision
    # holds for this model only, not for later ones of the same process.
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.dtype_policy)
    try:
        return build_model(
            dataset.input_shape,
            dataset.num_classes,
            **dataset.train.normalization_stats(),
        )
    finally:
        keras.config.set_dtype_policy(policy)
