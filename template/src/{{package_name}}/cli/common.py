"""What several commands share: option groups, argument types, and the checks
of the files they read, so that each is defined once."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import parse_compile
from ..machinery.errors import UsageError

if TYPE_CHECKING:
    import keras

# The largest values these flags take; larger ones are refused as bad
# arguments (counts of samples and steps: config.MAX_COUNT).
MAX_EPOCHS = 10**6
MAX_DEVICES = 2**16  # devices, processes: far beyond any cluster
MAX_SECONDS = 10**6  # about 11 days

DATA_HELP = (
    "a .npz file in the layout of mnist.npz, loaded into memory, or a directory of "
    "its arrays as .npy files (see convert), streamed from disk (default: the "
    "embedded digits)"
)


def add_data(parser) -> None:
    parser.add_argument("--data", type=Path, help=DATA_HELP)


def add_model(parser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="a model.keras")


def add_devices_and_processes(parser) -> None:
    scale = parser.add_argument_group(
        "devices and processes",
        "Each batch is split over the devices of every process. For several "
        "processes (hosts), start the same command in each: under srun (SLURM), "
        "mpirun (Open MPI) or a Kubernetes Indexed Job the processes find each "
        "other; otherwise give each its --process-id. The flags default to the "
        "variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID, "
        "then to the launcher's.",
    )
    scale.add_argument(
        "--devices",
        type=int_at_least(1, maximum=MAX_DEVICES),
        metavar="N",
        help="use the first N devices of each process (default: all)",
    )
    scale.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="address of process 0, which every process connects to (default: none, "
        "one process)",
    )
    scale.add_argument(
        "--num-processes",
        type=int_at_least(1, maximum=MAX_DEVICES),
        metavar="N",
        help="how many processes take part (default: 1)",
    )
    scale.add_argument(
        "--process-id",
        type=int_at_least(0, maximum=MAX_DEVICES - 1),
        metavar="I",
        help="this process's number, from 0; process 0 writes the files (default: 0)",
    )
    scale.add_argument(
        "--cluster",
        choices=("auto", "none"),
        default="auto",
        help="auto: join the processes a launcher (srun, mpirun, a Kubernetes "
        "Indexed Job) started as one run; none: ignore the launcher "
        "(default: %(default)s)",
    )
    scale.add_argument(
        "--join-timeout",
        type=positive_float(maximum=MAX_SECONDS),
        default=300.0,
        metavar="SECONDS",
        help="how long to wait for the coordinator and the other processes "
        "(default: %(default)s)",
    )


def join_processes(args: argparse.Namespace) -> None:
    """Joins the run's processes (one: nothing to join) as the flags of
    add_devices_and_processes, the JAX_* variables or the launcher say."""
    from ..machinery.execution import launchers, parallel

    cluster = launchers.settle(
        args.coordinator,
        args.num_processes,
        args.process_id,
        detect=args.cluster == "auto",
    )
    parallel.initialize(cluster, join_timeout=args.join_timeout)
    if cluster.num_processes > 1 and cluster.process_id == 0 and not args.quiet:
        print(cluster.describe(), flush=True)


def require_file(flag: str, path: Path | None) -> None:
    """Refuses a path that names no file (None: the flag's default is used)."""
    if path is not None and not path.is_file():
        raise UsageError(f"{flag} {path}: no such file")


def require_data(path: Path | None) -> None:
    """Refuses a --data that names neither a file nor a directory."""
    if path is not None and not (path.is_file() or path.is_dir()):
        raise UsageError(f"--data {path}: no such file or directory")


def load_model(path: Path) -> keras.Model:
    import zipfile

    import keras

    from .. import model  # noqa: F401  (registers the custom classes it defines)

    try:
        # Safe mode (the default) refuses models that would run arbitrary code.
        return keras.saving.load_model(path)
    except (OSError, ValueError, TypeError, KeyError, zipfile.BadZipFile) as e:
        raise UsageError(f"--model {path}: cannot load the model ({e})") from None


def check_input_shape(model: keras.Model, shape: tuple, source: str) -> None:
    expected = tuple(model.input_shape[1:])
    if tuple(shape) != expected:
        raise UsageError(
            f"{source}: samples have shape {tuple(shape)}, but the model expects "
            f"{expected}"
        )


def int_at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected an integer, got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
        return value

    return parse


def compile_choice(text: str) -> str:
    try:
        parse_compile(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def fraction(text: str) -> float:
    """A number from 0 up to, not including, 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


def positive_float(maximum: float = math.inf) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a number, got {text!r}"
            ) from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:g}, got {text}")
        return value

    return parse
