"""The tests on CPU (`nox -s tests-cpu`) and on an NVIDIA GPU (`nox -s tests-gpu`).

`nox -s tests-slow` repeats the kill -9 test with 25 kill points instead of 5.
"""

import os
import shutil

import nox

nox.options.default_venv_backend = "uv|virtualenv"


@nox.session(name="tests-cpu")
def tests_cpu(session: nox.Session) -> None:
    session.install(".[test]")
    # A test mostly waits on a training process of its own: one per core.
    every_core = ["-n", "auto", "--dist", "worksteal"]
    session.run("pytest", *every_core, *session.posargs, env={"JAX_PLATFORMS": "cpu"})


@nox.session(name="tests-slow")
def tests_slow(session: nox.Session) -> None:
    session.install(".[test]")
    env = {"JAX_PLATFORMS": "cpu", "KILL_POINTS": "25"}
    session.run("pytest", "tests/test_checkpoints.py", "-k", "kill_9", env=env)


@nox.session(name="tests-gpu")
def tests_gpu(session: nox.Session) -> None:
    if shutil.which("nvidia-smi") is None:
        message = "no NVIDIA GPU visible (nvidia-smi not found)"
        if os.environ.get("REQUIRE_GPU") == "1":
            session.error(message)
        session.skip(message)
    session.install(".[cuda,test]")
    session.run("pytest", *session.posargs, env={"JAX_PLATFORMS": "cuda"})
