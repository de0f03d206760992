"""`doctor`: what this installation runs on, and what is wrong.

The most common silent failure of a JAX install is a machine with an NVIDIA
GPU on which JAX runs on the CPU: jax installed without its CUDA extra, or
CUDA wheels that do not match. Training then works, only many times slower.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
from importlib import metadata

PACKAGES = ("jax", "jaxlib", "keras", "numpy", "jax-cuda12-plugin", "jax-cuda12-pjrt")
GPU_FIX = (
    "install JAX's CUDA wheels into this environment, matching versions: "
    "pip install -U 'jax[cuda12]' (or `pip install '.[cuda]'` in this project); "
    "then check again with this command"
)


def add(commands) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="check the installation: versions, backend, devices",
        description="Print the versions, the backend and the devices JAX sees, and "
        "warn when an NVIDIA GPU is present but JAX runs on the CPU.",
    )
    doctor.set_defaults(command=run)


def run(args: argparse.Namespace) -> int:
    """Prints the report; exit status 1 when a GPU goes unused, else 0."""
    row("python", f"{platform.python_version()} ({platform.platform()})")
    for name in PACKAGES:
        row(name, version(name))

    gpus = nvidia_gpus()
    # After the versions: a broken jax install should not hide them.
    from ..machinery.execution import backend as jax_backend

    try:
        jax_backend.start()
    except jax_backend.BackendError as e:
        row("backend", "none")
        print(f"error: {e}")
        return 1
    import jax

    backend = jax.default_backend()
    row("backend", backend)
    for device in jax.devices():
        row("device", f"{device.id}: {device.device_kind} ({device.platform})")
    if gpus is None:
        row("nvidia gpus", "nvidia-smi not found: no NVIDIA driver here")
    else:
        row("nvidia gpus", "; ".join(gpus) or "none listed by nvidia-smi")
    if gpus and backend == "cpu":
        platforms = os.environ.get("JAX_PLATFORMS")
        fix = GPU_FIX
        if platforms:
            fix = f"JAX_PLATFORMS={platforms} keeps it there: unset it"
        print(
            f"warning: nvidia-smi lists {len(gpus)} NVIDIA GPU(s), but JAX runs on "
            f"the CPU; {fix}"
        )
        return 1
    print("ok: JAX runs on " + ("the GPU" if backend == "gpu" else f"the {backend}"))
    return 0


def row(name: str, value: str) -> None:
    print(f"{name:<18} {value}")


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def nvidia_gpus() -> list[str] | None:
    """The GPUs `nvidia-smi` lists, by name; None without the tool."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        listed = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            errors="replace",  # a name in another encoding still prints
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if listed.returncode != 0:
        return []
    return [line.strip() for line in listed.stdout.splitlines() if line.strip()]
