"""Sessions of the template repository.

nox -s tests          the template's own tests (rendering, lint, correctness)
nox -t cpu            those plus every combination's own test suite on CPU
nox -t gpu            every combination's test suite on an NVIDIA GPU
nox -s slow           every combination's kill -9 test with 25 kill points
nox -s demo           render the default project and train it
nox -s bench          training speed against stock fit() and plain JAX, memory
                      and speed when streaming from disk, how fast the
                      command line answers, and how fast a run stops
"""

import os
import shutil
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from generator.matrix import by_id, combinations  # noqa: E402
from generator.render import render  # noqa: E402

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests"]
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")

# Most tests wait on training processes of their own, one core each: xdist
# runs as many tests at once as there are cores (on CPU only; on a GPU they
# would share one device's memory). A few tests take minutes: an idle worker
# steals queued tests from a busy one, so two long ones do not end up in line.
EVERY_CORE = ["-n", "auto", "--dist", "worksteal"]


@nox.session(tags=["cpu"])
def tests(session: nox.Session) -> None:
    """The template's own tests."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "test"))
    session.run("pytest", *EVERY_CORE, *session.posargs, env={"JAX_PLATFORMS": "cpu"})


# Four kinds of rendered tests run in one combination per loop, the
# fullest: `multiprocess` (several cooperating training processes), `signals`
# (SIGTERM / Ctrl-C to a training process: machinery/safety/stops.py and
# saving.py and the loop's call sites, the same in every combination of a
# loop), `faults` (a held lock, a failed write, a full disk, odd file names,
# bad JAX settings: machinery/safety/, cli/, the same everywhere), `streaming`
# (streamed runs in processes of their own, on 4 devices or killed:
# machinery/execution/feeds.py, the same everywhere; every combination still
# checks streamed == in memory in-process); two more in one combination only
# (ONCE). Every combination renders them, and a user's plain `pytest` runs
# them all.
FULL_SUITE = {
    "train_step-manual-add_loss-sample_weights",
    "scratch-builtin-add_loss-sample_weights",
}
ONE_PER_LOOP = "multiprocess or signals or faults or streaming"
# Two kinds run in one combination only: `launchers` (tasks joined under SLURM,
# Open MPI and Kubernetes variables, launch/slurm.sbatch through a stand-in
# srun) and `images` (image folders converted and trained on) exercise
# machinery/ that neither loop touches: machinery/execution/launchers.py and
# machinery/data/images.py, classes.py.
ONCE = "launchers or images"
ONCE_IN = "scratch-builtin-add_loss-sample_weights"


@nox.session
@nox.parametrize(
    "device", [nox.param("cpu", tags=["cpu"]), nox.param("gpu", tags=["gpu"])]
)
@nox.parametrize("combination", [c.id for c in combinations()])
def project(session: nox.Session, combination: str, device: str) -> None:
    """Renders one combination, installs it as a user would, runs its tests."""
    if device == "gpu":
        require_gpu(session)
    dst = fresh_render(session, by_id(combination).data, combination)
    session.install(f"{dst}[{'cuda,test' if device == 'gpu' else 'test'}]")
    session.chdir(dst)
    if combination not in FULL_SUITE:
        session.log(f"{ONE_PER_LOOP} tests: run in " + ", ".join(sorted(FULL_SUITE)))
    if combination != ONCE_IN:
        session.log(f"{ONCE} tests: run in {ONCE_IN}")
    session.run(
        "pytest",
        *(["-m", f"not ({skipped})"] if (skipped := skipped_here(combination)) else []),
        *(EVERY_CORE if device == "cpu" else []),
        *session.posargs,
        env={"JAX_PLATFORMS": "cuda" if device == "gpu" else "cpu"},
    )


def skipped_here(combination: str) -> str:
    """The marker expression of the rendered tests this combination leaves to
    others ("": none)."""
    if combination == ONCE_IN:
        return ""
    if combination in FULL_SUITE:
        return ONCE
    return f"{ONE_PER_LOOP} or {ONCE}"


@nox.session
@nox.parametrize("combination", [c.id for c in combinations()])
def slow(session: nox.Session, combination: str) -> None:
    """The rendered kill -9 test with 25 kill points instead of 5, on CPU."""
    dst = fresh_render(session, by_id(combination).data, combination)
    session.install(f"{dst}[test]")
    session.chdir(dst)
    env = {"JAX_PLATFORMS": "cpu", "KILL_POINTS": "25"}
    session.run("pytest", "tests/test_checkpoints.py", "-k", "kill_9", "-s", env=env)


@nox.session
def demo(session: nox.Session) -> None:
    """Renders the default project, trains it on the embedded digits, evaluates it."""
    dst = fresh_render(session, {}, "digits-classifier")
    session.install(str(dst))
    session.chdir(dst)
    session.run("python", "-m", "digits_classifier", "train", "--output", "runs/demo")
    session.run(
        "python",
        "-m",
        "digits_classifier",
        "evaluate",
        "--model",
        "runs/demo/model.keras",
    )
    session.log(f"The rendered project is in {dst}")


@nox.session
def bench(session: nox.Session) -> None:
    """Training speed: each loop against stock fit() and a JAX + optax ceiling."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "bench"))
    if shutil.which("nvidia-smi"):
        session.install("jax[cuda12]")  # the same table, on the GPU
    session.run("python", "-m", "benchmarks.run", *session.posargs)
    session.run("python", "-m", "benchmarks.streaming")
    session.run("python", "-m", "benchmarks.startup")
    session.run("python", "-m", "benchmarks.stops")
    session.run("python", "-m", "benchmarks.images")


def fresh_render(session: nox.Session, answers: dict, name: str) -> Path:
    """Renders into the session's temporary directory, replacing an older render."""
    dst = Path(session.create_tmp()) / name
    shutil.rmtree(dst, ignore_errors=True)
    return render(answers, dst)


def require_gpu(session: nox.Session) -> None:
    if shutil.which("nvidia-smi") is None:
        message = "no NVIDIA GPU visible (nvidia-smi not found)"
        if os.environ.get("REQUIRE_GPU") == "1":
            session.error(f"{message}, and REQUIRE_GPU=1")
        session.skip(f"{message}; set REQUIRE_GPU=1 to fail instead")
