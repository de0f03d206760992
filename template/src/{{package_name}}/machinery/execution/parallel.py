"""Data parallelism with JAX's own machinery: a device mesh and shardings.

Every batch is split over a 1-D mesh of devices ("batch"); the weights, the
optimizer and metric state, and the samples themselves are replicated on every
device. The jitted steps are written for one device: given arrays placed like
this, XLA partitions them and sums the gradients across devices itself.

Several processes (hosts) form one mesh after `jax.distributed.initialize`.
Each process runs the same program on the same data in the same order, and
hands JAX only the part of every array that lives on its own devices.
"""

from __future__ import annotations

import math
import socket
import sys
import time

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..errors import Reported
from .launchers import Cluster

AXIS = "batch"


class ParallelError(Reported):
    """A device or process setting that cannot work: reported, exit status 2."""


def initialize(cluster: Cluster, join_timeout: float = 300) -> None:
    """Joins a multi-process run (launchers.settle says which); must come
    before any JAX computation."""
    if cluster.num_processes == 1:
        return
    host, port = _address(cluster.coordinator, cluster.coordinator_from)
    # JAX ends the whole process (SIGABRT, a C++ stack trace) when a process
    # cannot reach the coordinator, or the coordinator misses a process, in
    # time. So they meet first, in plain Python, on the coordinator's port:
    # each process checks in with process 0, which waits for all of them;
    # either side gives up with a message after --join-timeout.
    if cluster.process_id == 0:
        _gather(port, cluster, join_timeout)
    else:
        _wait_for(host, port, cluster, join_timeout)
    # CPU devices of different processes talk over TCP with gloo; GPUs use
    # NCCL whatever this says.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        cluster.coordinator,
        cluster.num_processes,
        cluster.process_id,
        local_device_ids=cluster.local_device_ids,
        initialization_timeout=max(1, math.ceil(join_timeout)),
    )


def _address(coordinator: str, named_by: str) -> tuple[str, int]:
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ParallelError(f"{named_by}: expected HOST:PORT, e.g. 10.0.0.1:1234")
    host = host.strip("[]")  # [::1]:1234
    try:
        socket.getaddrinfo(host, int(port))
    except socket.gaierror as e:
        raise ParallelError(f"{named_by}: unknown host {host} ({e.strerror})") from None
    return host, int(port)


def _gather(port: int, cluster: Cluster, timeout: float) -> None:
    """Process 0: returns once every other process has checked in."""
    deadline = time.monotonic() + timeout
    said_at = time.monotonic() + 2  # a normal start needs no word
    joined = {0}
    try:
        server = socket.create_server(("", port))
    except OSError as e:
        raise ParallelError(
            f"{cluster.coordinator_from}: cannot listen on port {port} "
            f"({e.strerror or e})"
        ) from None
    with server:
        server.settimeout(0.5)
        while len(joined) < cluster.num_processes:
            missing = sorted(set(range(cluster.num_processes)) - joined)
            if said_at is not None and time.monotonic() >= said_at:
                _say(
                    f"process 0 of {cluster.num_processes} ({cluster.source}): waiting "
                    f"up to {timeout:g} s on port {port} for process(es) "
                    f"{_listed(missing)}"
                )
                said_at = None
            if time.monotonic() >= deadline:
                raise ParallelError(
                    f"{cluster.num_processes} processes ({cluster.source}): "
                    f"process(es) {_listed(missing)} did not join within "
                    f"{timeout:g} s; start them with coordinator "
                    f"{cluster.coordinator} (--join-timeout to wait longer)"
                )
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(5)
                try:
                    text = connection.recv(32).decode(errors="replace").strip()
                except OSError:
                    continue
            if text.isdigit():
                joined.add(int(text))


def _wait_for(host: str, port: int, cluster: Cluster, timeout: float) -> None:
    """Checks in with process 0 (`_gather`), waiting for it to listen."""
    deadline = time.monotonic() + timeout
    said_at = time.monotonic() + 2  # process 0 is usually a moment behind
    while True:
        try:
            with socket.create_connection((host, port), timeout=5) as connection:
                connection.sendall(f"{cluster.process_id}\n".encode())
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise ParallelError(
                    f"{cluster.coordinator_from}: nothing answered within "
                    f"{timeout:g} s ({e.strerror or e}); is process 0 running "
                    "there? (--join-timeout to wait longer)"
                ) from None
        if said_at is not None and time.monotonic() >= said_at:
            _say(
                f"process {cluster.process_id} of {cluster.num_processes} "
                f"({cluster.source}): waiting up to {timeout:g} s for process 0 at "
                f"{cluster.coordinator}"
            )
            said_at = None
        time.sleep(0.5)


def _listed(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:10]))
    return shown + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def is_main_process() -> bool:
    """Process 0 alone writes files and reports progress."""
    return jax.process_index() == 0


class DataParallel:
    """Where arrays live: batches split over the mesh, everything else replicated."""

    def __init__(self, devices: list):
        self.mesh = Mesh(np.array(devices), (AXIS,))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        # Rows of batch indices: each row (one step) is split along the batch.
        self.split_rows = NamedSharding(self.mesh, PartitionSpec(None, AXIS))

    @property
    def size(self) -> int:
        return self.mesh.size

    def describe(self) -> str:
        """E.g. "on 1 cpu device (cpu)", "on 4 gpu devices (NVIDIA H100 80GB
        HBM3), data-parallel in 2 processes"."""
        device = self.mesh.devices.flat[0]
        processes = jax.process_count()
        text = f"on {self.size} {device.platform} device{'s' if self.size > 1 else ''}"
        text += f" ({device.device_kind})"
        if self.size > 1:
            text += f", data-parallel in {processes} process"
            text += "es" if processes > 1 else ""
        return text

    def replicate(self, tree):
        """A full copy on every device of every array in `tree`."""
        return jax.tree.map(lambda value: self._place(value, self.replicated), tree)

    def batches(self, index: np.ndarray):
        """Rows of batch indices, each row split over the devices.

        A row that does not divide evenly, the short last batch of an epoch,
        is replicated instead: every device computes all of it, so the result
        is exact, and it is one step per epoch.
        """
        return self._place(index, self.batch_sharding(index.shape[1]))

    def batch_sharding(self, batch_size: int) -> NamedSharding:
        """How `batches` places (steps, batch, ...) arrays of this batch size."""
        return self.split_rows if batch_size % self.size == 0 else self.replicated

    def _place(self, value, sharding: NamedSharding):
        # Already there: no copy. Equal, not merely equivalent: an array the
        # jitted steps get with another kind of sharding, even one that puts
        # it on the same device, makes them compile again.
        if isinstance(value, jax.Array) and value.sharding == sharding:
            return value
        # Every process holds the same full value; each hands over the pieces
        # its own devices need.
        host = np.asarray(value)
        return jax.make_array_from_callback(host.shape, sharding, host.__getitem__)


def data_parallel(batch_size: int, devices: int | None = None) -> DataParallel:
    """A mesh of the first `devices` local devices of every process (None: all).

    Refuses a batch size that does not split evenly over the mesh.
    """
    local = jax.local_device_count()
    if devices is not None and devices > local:
        raise ParallelError(
            f"--devices {devices}: this process sees only {local} "
            f"{jax.default_backend()} device{'s' if local > 1 else ''}"
        )
    per_process = devices or local
    chosen = [
        device
        for process in range(jax.process_count())
        for device in sorted(
            (d for d in jax.devices() if d.process_index == process),
            key=lambda d: d.id,
        )[:per_process]
    ]
    if batch_size % len(chosen):
        raise ParallelError(
            f"--batch-size {batch_size} does not split evenly over {len(chosen)} "
            f"devices: choose a multiple of {len(chosen)}, or fewer --devices"
        )
    return DataParallel(chosen)


def one_device() -> DataParallel:
    """A mesh of this process's first device, for work that is not distributed."""
    return DataParallel(jax.local_devices()[:1])
