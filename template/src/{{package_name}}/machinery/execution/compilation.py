"""How the training steps are compiled, chosen per model by measurement.

Each compiled call runs several training steps, either as a `lax.scan` (one
loop body, compiled once, whatever the number of steps) or unrolled (the
steps written out one after another in one program). Neither wins for every
model: on XLA's CPU backend a convolution's kernel gradient inside a loop
body runs on a slow generic loop instead of the fast convolution it gets
outside one (the README's CNN took about twice the time per step scanned),
while unrolling costs dense networks compile time and speed (an MLP's 8
unrolled steps took 1.2x the scan's time).

So at the start of a run `choose` times the user's model both ways, on the
run's devices, on copies of its state (the run itself is not touched), and
takes the faster; the scan is timed first and the unrolled steps only where
trying them costs under TRIAL_SHARE of the run's estimated time. A call then
runs as many steps as take about CALL_SECONDS (at most MAX_STEPS), so that a
stop signal is honoured within about that, plus the checkpoint's write.

The choice (a `Plan`) is printed in one line, cached per model, devices,
batch size and precision (`cache_path`), recorded in checkpoints so that a
resume compiles the same way and stays bit-identical, and written to
run.json. `train --compile scan:N|unroll:N` pins it; `--compile measure`
measures whatever the run's length and the cache hold (and caches the
result, for the long runs to come).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ...config import COMPILE_KINDS as KINDS
from ...config import TrainConfig
from .. import PROJECT
from ..errors import UsageError

CALL_SECONDS = 1.0  # what one compiled call should take, about
MAX_STEPS = 64  # steps per call at most: more gains nothing measurable
MAX_UNROLLED = 8  # unrolled steps per call at most: compile time grows with them
# Trying the unrolled steps may cost this share of the run's estimated time at
# most (a compile and two calls, once per model: the decision is cached).
TRIAL_SHARE = 0.25
# A run of at most this many calls of `wanted` steps is not measured at all:
# its timing calls would cost more than any choice could save.
SHORT_RUN_CALLS = 4


@dataclasses.dataclass(frozen=True)
class Plan:
    kind: str  # one of KINDS
    steps_per_call: int
    # How it was decided, for the one line and run.json (not compared).
    how: str = dataclasses.field(default="", compare=False)
    ms_per_step: dict = dataclasses.field(default_factory=dict, compare=False)
    seconds: float = dataclasses.field(default=0.0, compare=False)

    @property
    def unrolled(self) -> bool:
        return self.kind == "unroll"

    def __str__(self) -> str:
        return f"{self.kind}:{self.steps_per_call}"

    def describe(self) -> str:
        way = "unrolled" if self.unrolled else "scanned"
        line = f"Steps: {self.steps_per_call} per compiled call, {way} ({self.how}"
        if self.ms_per_step:
            line += "; ms/step " + ", ".join(
                f"{kind} {ms:.3g}" for kind, ms in self.ms_per_step.items()
            )
        return line + ")"

    def record(self) -> dict:
        return {
            "kind": self.kind,
            "steps_per_call": self.steps_per_call,
            "how": self.how,
            "ms_per_step": self.ms_per_step,
            "decision_seconds": round(self.seconds, 3),
        }


def pinned(config: TrainConfig) -> Plan | None:
    """The plan `--compile` pins, if it pins one."""
    if config.pinned_compilation is None:
        return None
    return Plan(*config.pinned_compilation, "as --compile pins it")


def options(config: TrainConfig) -> dict:
    """`choose`'s `pinned` and `measure`, from `--compile`."""
    return {"pinned": pinned(config), "measure": config.compile == "measure"}


def run_steps(step: Callable, carry, xs, unrolled: bool):
    """`lax.scan(step, carry, xs)`, or the same steps unrolled; returns the
    carry and the last step's outputs (the metrics are running totals, so
    the last step's logs cover the call)."""
    if not unrolled:
        carry, outputs = jax.lax.scan(step, carry, xs)
        return carry, jax.tree.map(lambda values: values[-1], outputs)
    steps = jax.tree.leaves(xs)[0].shape[0]
    for i in range(steps):
        carry, outputs = step(carry, jax.tree.map(lambda a, i=i: a[i], xs))
    return carry, outputs


def choose(
    call: Callable,
    state,
    inputs: Callable[[int], tuple],
    *,
    wanted: int,
    total_steps: int,
    key: dict,
    pinned: Plan | None = None,
    resumed: dict | None = None,
    measure: bool = False,
) -> Plan:
    """The plan of a run: pinned, resumed (a checkpoint's), cached, or measured.

    `call(state, data, xs, unrolled)` runs one compiled call and returns the
    new state (it may donate `state`); `inputs(steps)` gives the `(data, xs)`
    of a call of that many steps from the start of the run's first epoch;
    `wanted` is the most steps a call may run (checkpoints and streamed reads
    bound it too). `measure`: measure whatever the run's length and the cache
    hold (`--compile measure`). Every process takes process 0's decision.
    """
    if pinned is not None:
        check_pinned(pinned, resumed)
        return dataclasses.replace(
            pinned, steps_per_call=min(pinned.steps_per_call, wanted)
        )
    if resumed:
        plan = Plan(resumed["kind"], min(resumed["steps_per_call"], wanted))
        return dataclasses.replace(plan, how="as the checkpoint was trained")
    if not measure and total_steps <= SHORT_RUN_CALLS * wanted:
        return Plan("scan", wanted, "the run is too short to measure")
    started = time.perf_counter()
    cache = Cache(key)
    plan = None if measure else _agree(cache.get(wanted))
    if plan is None:
        total_steps = math.inf if measure else total_steps
        plan = _agree(_measure(call, state, inputs, wanted, total_steps))
        if plan.how.startswith("measured"):
            cache.put(plan)
    return dataclasses.replace(plan, seconds=time.perf_counter() - started)


def _measure(call, state, inputs, wanted: int, total_steps: int) -> Plan:
    """Times the scan, then (while worth it) one step per call and a few
    steps unrolled per call; the fastest per step wins."""
    scan = _time(call, state, inputs, wanted, unrolled=False)
    times = {"scan": scan.per_step}
    candidates = {"scan": Plan("scan", _steps_for(scan.per_step, wanted))}
    # The scan's compile serves the training, if it wins; its calls do not.
    spent = 2 * scan.call_s
    budget = TRIAL_SHARE * total_steps * scan.per_step
    unrolled_steps = min(MAX_UNROLLED, candidates["scan"].steps_per_call, scan.steps)
    for steps in dict.fromkeys([1, unrolled_steps]):
        # Unrolled steps compile about as one step does, once per step.
        cost = steps * max(scan.compile_s, 0.5) + 2 * steps * min(times.values())
        if _same(spent + cost > budget):
            break
        trial = _time(call, state, inputs, steps, unrolled=True)
        spent += trial.compile_s + 2 * trial.call_s
        times[f"unroll:{steps}"] = trial.per_step
        candidates[f"unroll:{steps}"] = Plan("unroll", steps)
    ms = {name: seconds * 1e3 for name, seconds in times.items()}
    if len(times) == 1:
        short = "the run is too short to try other ways"
        return dataclasses.replace(candidates["scan"], how=short, ms_per_step=ms)
    best = min(times, key=times.get)
    return dataclasses.replace(candidates[best], how="measured", ms_per_step=ms)


@dataclasses.dataclass
class _Timing:
    per_step: float  # seconds per step
    call_s: float  # seconds a call took
    compile_s: float  # seconds the first call took beyond that
    steps: int  # steps per call timed


def _time(call, state, inputs, steps: int, unrolled: bool) -> _Timing:
    """Calls of `steps` steps on copies of `state`: the first compiles, the
    others are timed. One-step calls run one after another, as training
    would run them, for a tenth of a second or so."""
    data, xs = inputs(steps)
    steps = jax.tree.leaves(xs)[0].shape[0]  # fewer in a short epoch
    started = time.perf_counter()
    jax.block_until_ready(call(jax.tree.map(jnp.copy, state), data, xs, unrolled))
    first = time.perf_counter() - started
    fresh = jax.tree.map(jnp.copy, state)
    jax.block_until_ready(fresh)
    started = time.perf_counter()
    fresh = call(fresh, data, xs, unrolled)
    jax.block_until_ready(fresh)
    seconds = time.perf_counter() - started
    calls = 1
    while steps == 1 and _same(seconds < 0.1 and calls < 64):
        fresh = call(fresh, data, xs, unrolled)
        jax.block_until_ready(fresh)
        calls += 1
        seconds = time.perf_counter() - started
    call_s = seconds / calls
    return _Timing(call_s / steps, call_s, max(0.0, first - call_s), steps)


def _steps_for(seconds_per_step: float, wanted: int) -> int:
    """Steps per call for calls of about CALL_SECONDS."""
    fits = int(CALL_SECONDS / max(seconds_per_step, 1e-9))
    return max(1, min(wanted, MAX_STEPS, fits))


def _same(condition: bool) -> bool:
    """Process 0's answer, in every process: each trial call runs on every
    process's devices together, so all must make the same calls."""
    if jax.process_count() == 1:
        return condition
    from jax.experimental import multihost_utils

    answer = multihost_utils.broadcast_one_to_all(np.array(condition, np.int32))
    return bool(answer)


def _agree(plan: Plan | None) -> Plan | None:
    """Process 0's plan, in every process (each measured its own)."""
    if jax.process_count() == 1:
        return plan
    from jax.experimental import multihost_utils

    code = np.array(
        [-1, 0] if plan is None else [KINDS.index(plan.kind), plan.steps_per_call],
        np.int32,
    )
    kind, steps = (int(v) for v in multihost_utils.broadcast_one_to_all(code))
    if kind < 0:
        return None
    if plan is not None and (KINDS[kind], steps) == (plan.kind, plan.steps_per_call):
        return plan
    return Plan(KINDS[kind], steps, "as process 0 decided")


class Cache:
    """Plans decided by measurement, per model, devices, batch size, precision
    and JAX version, in the user's cache directory (`cache_path`)."""

    def __init__(self, key: dict):
        text = json.dumps(
            {**key, "jax": jax.__version__, "devices": _devices()},
            sort_keys=True,
            default=str,
        )
        self.key = hashlib.sha256(text.encode()).hexdigest()[:32]
        self.path = cache_path()

    def get(self, wanted: int) -> Plan | None:
        if jax.process_index() != 0:
            return None  # process 0's answer is broadcast
        entry = self._read().get(self.key)
        if not isinstance(entry, dict) or entry.get("kind") not in KINDS:
            return None
        steps = entry.get("steps_per_call")
        if not isinstance(steps, int) or steps < 1:
            return None
        return Plan(entry["kind"], min(steps, wanted), "cached for this model")

    def put(self, plan: Plan) -> None:
        if jax.process_index() != 0:
            return
        entries = self._read()
        entries[self.key] = {"kind": plan.kind, "steps_per_call": plan.steps_per_call}
        try:
            from ..safety.saving import replace_atomically

            self.path.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps(entries, indent=1) + "\n"
            replace_atomically(self.path, lambda tmp: Path(tmp).write_text(text))
        except OSError:
            pass  # a cache that cannot be written is measured again next time

    def _read(self) -> dict:
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return entries if isinstance(entries, dict) else {}


def key(recipe: dict, config: TrainConfig, feed) -> dict:
    """What a cached plan is for: the model, optimizer, loss and metrics
    (fingerprint.of_run), the batch, precision and devices, and the feed."""
    return {
        "recipe": recipe,
        "batch_size": config.batch_size,
        "precision": config.precision,
        "devices": config.devices,
        "feed": feed.description,
    }


def cache_path() -> Path:
    """`$<PACKAGE>_COMPILATION_CACHE`, else the user's cache directory."""
    variable = f"{PROJECT.upper()}_COMPILATION_CACHE"
    if os.environ.get(variable):
        return Path(os.environ[variable])
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return home / PROJECT / "compilation.json"


def _devices() -> list:
    devices = jax.devices()
    return [len(devices), jax.process_count(), sorted({d.device_kind for d in devices})]


def check_pinned(pinned: Plan | None, resumed: dict | None) -> None:
    """A resume compiles as its checkpoint was trained: another pinned kind
    would change the run's round-off."""
    if pinned is not None and resumed and resumed["kind"] != pinned.kind:
        raise UsageError(
            f"--compile {pinned}: the checkpoint was trained with "
            f"{resumed['kind']} steps; a resume compiles as it was trained (leave "
            "--compile out)"
        )
