"""Which processes make one run: the flags, JAX's variables, or the launcher.

A cluster's launcher starts the same command once per task and tells each
task, in environment variables, how many tasks there are and which one it is:

- SLURM, in every task of an `srun` step: `SLURM_STEP_NUM_TASKS`,
  `SLURM_PROCID`, `SLURM_LOCALID`, `SLURM_NODEID`, `SLURM_STEP_TASKS_PER_NODE`,
  `SLURM_STEP_NODELIST` (the coordinator is the step's first node) and
  `SLURM_JOB_ID` (the port); `SLURM_GPUS_PER_TASK` when it gave each task its
  own GPUs.
- Open MPI, in every rank `mpirun` starts: `OMPI_COMM_WORLD_SIZE`,
  `OMPI_COMM_WORLD_RANK`, `OMPI_COMM_WORLD_LOCAL_RANK`,
  `OMPI_COMM_WORLD_LOCAL_SIZE`, and `OMPI_MCA_orte_hnp_uri` (Open MPI 4:
  mpirun's host is the coordinator). Open MPI 5 names no host: one node's
  ranks meet on 127.0.0.1, several nodes need `JAX_COORDINATOR_ADDRESS`.
- Kubernetes, in every pod of an Indexed Job (a JobSet's jobs are Indexed
  Jobs): `JOB_COMPLETION_INDEX` is the process id. Kubernetes tells a pod
  neither the count nor a peer's address, so the manifest sets
  `JAX_NUM_PROCESSES` and `JAX_COORDINATOR_ADDRESS` (launch/jobset.yaml).

Each setting comes from the first of: its flag, its `JAX_*` variable, the
launcher. The rules follow JAX's own detection (`jax._src.clusters`), with two
differences: a JobSet needs no Kubernetes client here, and a task is not bound
to the one GPU of its local rank, which would leave all but one GPU of a
one-task-per-node job idle. Here one task per node uses all the node's GPUs,
and several tasks per node share them out evenly, or use the ones the
launcher gave each.

Pure Python, no JAX: the settings are checked before JAX starts.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import Reported

# Where JAX's detection puts a launcher's coordinator: a port in the top 4096,
# picked from the job's id, so that every task picks the same one.
PORTS_FROM = 65536 - 4096

MAX_PROCESSES = 2**16  # far beyond any cluster

NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")  # one entry per GPU of the node


class ClusterError(Reported):
    """Settings under which the processes cannot make one run: exit status 2."""


@dataclass(frozen=True)
class Launcher:
    """What a launcher says of this task."""

    name: str  # "SLURM", "Open MPI", "Kubernetes"
    count_variable: str | None  # the variable that gave num_processes
    id_variable: str
    num_processes: int | None  # None: the launcher does not say
    process_id: int
    coordinator: str | None = None
    local_id: int = 0  # this task among the tasks on its node
    local_count: int = 1  # tasks on this node
    own_gpus: bool = False  # the launcher gave each task its own GPUs


@dataclass(frozen=True)
class Cluster:
    """The run's processes, as settled: the arguments of jax.distributed.initialize."""

    num_processes: int
    process_id: int
    coordinator: str | None
    source: str  # what settled them: "flags", "JAX_* variables", a launcher's name
    coordinator_from: str = ""  # e.g. "--coordinator 10.0.0.1:1234", for messages
    local_device_ids: list[int] | None = None  # None: every device this task sees

    def describe(self) -> str:
        """E.g. "2 processes, joined through SLURM (coordinator node1:62001)"."""
        return (
            f"{self.num_processes} processes, joined through {self.source} "
            f"(coordinator {self.coordinator})"
        )


def settle(
    coordinator: str | None,
    num_processes: int | None,
    process_id: int | None,
    detect: bool = True,
    environ: Mapping[str, str] = os.environ,
    gpus: int | None = None,
) -> Cluster:
    """The run's processes from the flags (None: not given), then the `JAX_*`
    variables, then the launcher this process runs under (unless `detect` is
    off). Refuses settings that contradict the launcher. `gpus`: how many GPUs
    this task sees (None: count them)."""
    launcher = detect_launcher(environ) if detect else None
    given = {
        "coordinator": (coordinator, "--coordinator"),
        "count": (num_processes, "--num-processes"),
        "id": (process_id, "--process-id"),
    }
    from_environ = {
        "coordinator": environ.get("JAX_COORDINATOR_ADDRESS") or None,
        "count": _environ_int(environ, "JAX_NUM_PROCESSES", minimum=1),
        "id": _environ_int(environ, "JAX_PROCESS_ID", minimum=0),
    }
    variable = {
        "coordinator": "JAX_COORDINATOR_ADDRESS",
        "count": "JAX_NUM_PROCESSES",
        "id": "JAX_PROCESS_ID",
    }
    settled, origin = {}, {}
    for key, (value, flag) in given.items():
        if value is not None:
            settled[key], origin[key] = value, f"{flag} {value}"
        elif from_environ[key] is not None:
            value = from_environ[key]
            settled[key], origin[key] = value, f"{variable[key]}={value}"
    if launcher is not None:
        _check_against(launcher, settled, origin)
        offered = {
            "id": (launcher.process_id, launcher.id_variable),
            "count": (launcher.num_processes, launcher.count_variable),
            "coordinator": (launcher.coordinator, f"the {launcher.name} coordinator"),
        }
        for key, (value, name) in offered.items():
            if key not in settled and value is not None:
                joiner = " " if key == "coordinator" else "="
                settled[key], origin[key] = value, f"{name}{joiner}{value}"
    count, id_ = settled.get("count", 1), settled.get("id", 0)
    if launcher is not None and count == 1:
        if id_ > 0:  # a task that would train alone, as a copy of task 0
            raise ClusterError(
                f"{origin['id']}: {launcher.name} started this process as task {id_}, "
                "but the run has one process: set JAX_NUM_PROCESSES (see launch/ "
                "and the README)"
            )
        launcher = None  # one task: nothing to join
    if count == 1:
        return Cluster(1, 0, None, "")
    if not 0 <= id_ < count:
        raise ClusterError(f"{origin['id']}: must be from 0 to {count - 1}")
    if "coordinator" not in settled:
        if launcher is None:
            raise ClusterError("--num-processes above 1 needs --coordinator HOST:PORT")
        raise ClusterError(
            f"{launcher.name} started {count} processes but names no coordinator: "
            "set JAX_COORDINATOR_ADDRESS to HOST:PORT of process 0's host"
        )
    if launcher is not None:
        source = launcher.name
        devices = local_device_ids(launcher, _visible_gpus(environ, gpus))
    else:
        source = "flags" if origin["count"].startswith("--") else "JAX_* variables"
        devices = None
    return Cluster(
        count, id_, settled["coordinator"], source, origin["coordinator"], devices
    )


def detect_launcher(environ: Mapping[str, str] = os.environ) -> Launcher | None:
    """The launcher this process runs under, if any."""
    for detect in (_slurm, _open_mpi, _kubernetes):
        launcher = detect(environ)
        if launcher is not None:
            return launcher
    return None


def local_device_ids(launcher: Launcher, gpus: int) -> list[int] | None:
    """The GPUs (numbered as this task sees them) this task uses; None for all.

    One task per node uses every GPU it sees, as does a task the launcher gave
    GPUs of its own. Tasks that see the same GPUs share them out evenly, by
    local rank; a node with too few for that is refused, since two processes
    on one GPU would each take its memory.
    """
    if gpus == 0 or launcher.local_count == 1 or launcher.own_gpus:
        return None
    tasks = launcher.local_count
    if gpus % tasks:
        raise ClusterError(
            f"{launcher.name} started {tasks} tasks on this node, which see "
            f"{gpus} GPU{'s' if gpus > 1 else ''}: they cannot share them without "
            "two tasks using one GPU; start one task per node (it uses every GPU) "
            "or one task per GPU"
        )
    share = gpus // tasks
    return list(range(launcher.local_id * share, (launcher.local_id + 1) * share))


def _check_against(launcher: Launcher, settled: dict, origin: dict) -> None:
    """Refuses a count or an id that the launcher contradicts."""
    count, id_ = settled.get("count"), settled.get("id")
    told = launcher.num_processes
    if told is not None and count is not None and count != told:
        raise ClusterError(
            f"{origin['count']}, but {launcher.name} started {told} tasks "
            f"({launcher.count_variable}={told}): leave the "
            f"count to {launcher.name}, or start {count} tasks"
        )
    if id_ is not None and id_ != launcher.process_id:
        raise ClusterError(
            f"{origin['id']}, but this is {launcher.name} task {launcher.process_id} "
            f"({launcher.id_variable}={launcher.process_id}): leave the process "
            f"numbers to {launcher.name}"
        )


def _slurm(environ: Mapping[str, str]) -> Launcher | None:
    # SLURM_STEP_NUM_TASKS is set in the tasks of an srun step, not in the
    # batch script itself, which is one process of its own.
    needed = ("SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "SLURM_STEP_NODELIST")
    if not all(name in environ for name in needed):
        return None
    node = _integer(environ, "SLURM_NODEID", default=0)
    return Launcher(
        name="SLURM",
        count_variable="SLURM_STEP_NUM_TASKS",
        id_variable="SLURM_PROCID",
        num_processes=_integer(environ, "SLURM_STEP_NUM_TASKS", minimum=1),
        process_id=_integer(environ, "SLURM_PROCID"),
        coordinator=f"{first_host(environ['SLURM_STEP_NODELIST'])}:"
        f"{PORTS_FROM + _integer(environ, 'SLURM_JOB_ID', 0, maximum=2**63) % 4096}",
        local_id=_integer(environ, "SLURM_LOCALID", default=0),
        local_count=tasks_on_node(environ.get("SLURM_STEP_TASKS_PER_NODE", "1"), node),
        own_gpus="SLURM_GPUS_PER_TASK" in environ,
    )


def _open_mpi(environ: Mapping[str, str]) -> Launcher | None:
    if not all(f"OMPI_COMM_WORLD_{n}" in environ for n in ("SIZE", "RANK")):
        return None
    size = _integer(environ, "OMPI_COMM_WORLD_SIZE", minimum=1)
    local_count = _integer(environ, "OMPI_COMM_WORLD_LOCAL_SIZE", default=1, minimum=1)
    coordinator = None
    uri = environ.get("OMPI_MCA_orte_hnp_uri", "")
    # "1531576320.0;tcp://10.96.0.1,10.148.0.1:34911": mpirun's job id and host.
    found = re.match(r"(\d+)\.\d+;tcp6?://\[?([^,\]/:]+)", uri)
    if found:
        port = PORTS_FROM + int(found[1]) // 4096 % 4096
        coordinator = f"{found[2]}:{port}"
    elif local_count == size:  # Open MPI 5, every rank on this node
        job = environ.get("PMIX_NAMESPACE", "")
        coordinator = f"127.0.0.1:{PORTS_FROM + zlib.crc32(job.encode()) % 4096}"
    return Launcher(
        name="Open MPI",
        count_variable="OMPI_COMM_WORLD_SIZE",
        id_variable="OMPI_COMM_WORLD_RANK",
        num_processes=size,
        process_id=_integer(environ, "OMPI_COMM_WORLD_RANK"),
        coordinator=coordinator,
        local_id=_integer(environ, "OMPI_COMM_WORLD_LOCAL_RANK", default=0),
        local_count=local_count,
    )


def _kubernetes(environ: Mapping[str, str]) -> Launcher | None:
    if "JOB_COMPLETION_INDEX" not in environ:
        return None
    # One pod per process, with GPUs of its own.
    return Launcher(
        name="Kubernetes",
        count_variable=None,
        id_variable="JOB_COMPLETION_INDEX",
        num_processes=None,
        process_id=_integer(environ, "JOB_COMPLETION_INDEX"),
    )


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: "gpu[07-09,12],cpu1" -> "gpu07"."""
    found = re.match(r"([^,\[]*)(?:\[([^,\]\-]*)[^\]]*\]([^,]*))?", nodelist.strip())
    prefix, first, suffix = found.groups() if found else ("", None, None)
    host = prefix + (first or "") + (suffix or "")
    if not host:
        raise ClusterError(f"SLURM_STEP_NODELIST={nodelist}: names no host")
    return host


def tasks_on_node(tasks_per_node: str, node: int) -> int:
    """SLURM's "2(x3),1" (two tasks on each of three nodes, then one) for a node."""
    counts = []
    for part in tasks_per_node.split(","):
        found = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if not found:
            raise ClusterError(
                f"SLURM_STEP_TASKS_PER_NODE={tasks_per_node}: not SLURM's form, "
                "e.g. 2(x3),1"
            )
        counts += [int(found[1])] * int(found[2] or 1)
    return counts[node] if node < len(counts) else 1


def _visible_gpus(environ: Mapping[str, str], gpus: int | None) -> int:
    """How many NVIDIA GPUs this task would see (0 where JAX is set to skip them)."""
    if gpus is not None:
        return gpus
    platforms = environ.get("JAX_PLATFORMS", "")
    if platforms and not any(p in platforms for p in ("cuda", "gpu")):
        return 0
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        return len(list(NVIDIA_GPUS.iterdir()))
    except OSError:  # no NVIDIA driver: CPUs only
        return 0


def _integer(
    environ: Mapping[str, str],
    name: str,
    default: int | None = None,
    minimum: int = 0,
    maximum: int = MAX_PROCESSES,
) -> int:
    text = environ.get(name)
    if text is None and default is not None:
        return default
    value = _environ_int(environ, name, minimum, maximum)
    if value is None:
        raise ClusterError(f"{name} is not set")
    return value


def _environ_int(
    environ: Mapping[str, str], name: str, minimum: int, maximum: int = MAX_PROCESSES
) -> int | None:
    text = environ.get(name)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        message = f"expected an integer, got {text!r}"
        raise ClusterError(f"{name}={text}: {message}") from None
    if not minimum <= value <= maximum:
        raise ClusterError(f"{name}={text}: must be from {minimum} to {maximum}")
    return value
