"""How batches reach the compiled steps: from copies on the devices, or streamed.

Both training loops draw an epoch's sample order, cut it into calls of several
steps each (`chunks`), and hand every call to a feed, which returns the
arguments of the compiled steps: `(data, xs)`, scanned as

    batch = tuple(array[x] for array in data) if data else x

- `InMemory`: the split's arrays go to every device once for the whole run,
  and each call gets rows of sample indices, gathered on the device. The fast
  path, for data that fits.
- `Streamed`: the split's x is memory-mapped (a data directory, see data.py).
  A background thread gathers each call's samples from the files in one
  bulk read per array, a few calls ahead of the training, and places them on
  the devices already split along the batch: each process reads only the
  samples of its own devices' share of every batch, and nothing holds more
  than a few calls' worth of samples.

The loops hand each call's outputs back (`dispatched`), which lets a streamed
feed bound the calls in flight. The same order gives the same batches either
way, so a streamed run trains to the same weights as an in-memory one, and
resumes the same way.
"""

from __future__ import annotations

import collections
import dataclasses
import queue
import threading
from collections.abc import Iterator

import jax
import numpy as np

from ..data.splits import DataError, Split, device_dtype, row_blocks
from . import parallel

# A streamed call holds at most this many bytes of samples (fewer steps per
# call for large samples), and this many calls are read ahead of the training.
CALL_BYTES = 32 * 2**20
READ_AHEAD = 3
# Calls dispatched to the devices and not yet finished, at most (see
# `bound_in_flight`).
IN_FLIGHT = 2
# XLA's CPU buffers start on this boundary; a host array that does too is
# used in place when placed on a CPU device.
ALIGNMENT = 64
# Training samples this process has streamed, by file: `train` reports them
# in a multi-process run, where each process reads only its own share.
SAMPLES_READ: collections.Counter[str] = collections.Counter()


def arrays(split: Split, weighted: bool = True) -> tuple[np.ndarray, ...]:
    """The arrays a step takes, in the order of Split's fields: x, y, then any
    per-sample weights unless `weighted` is False."""
    fields = tuple(getattr(split, field.name) for field in dataclasses.fields(split))
    return fields if weighted else fields[:2]


def for_split(
    split: Split,
    placement: parallel.DataParallel,
    weighted: bool = True,
    counted: bool = False,
) -> InMemory | Streamed:
    """The feed a split needs: streamed when its x is memory-mapped (its
    reads `counted` in SAMPLES_READ)."""
    if split.streamed:
        return Streamed(arrays(split, weighted), placement, counted)
    return InMemory(arrays(split, weighted), placement)


def chunks(order: np.ndarray, batch_size: int, done: int, steps_per_call: int):
    """Yields (steps done after it, index rows) for the calls of one epoch.

    Full batches go `steps_per_call` at a time from step `done` on, and then
    any last short batch alone: trained, not dropped, and compiled once for
    the run because its shape is the same every epoch.
    """
    full = len(order) // batch_size
    rows = order[: full * batch_size].reshape(full, batch_size)
    for start in range(done, full, steps_per_call):
        stop = min(start + steps_per_call, full)
        yield stop, rows[start:stop]
    if len(order) % batch_size:
        yield full + 1, order[full * batch_size :][None]


def first_call(feed, order: np.ndarray, batch_size: int, steps: int) -> tuple:
    """The `(data, xs)` of an epoch's first call of `steps` steps (fewer where
    the epoch or the feed has fewer): what compilation.py times."""
    calls = feed.calls(order, batch_size, 0, steps)
    try:
        return next(iter(calls))[2]
    finally:
        calls.close()


def bound_in_flight(in_flight: collections.deque, outputs) -> None:
    """Waits until at most IN_FLIGHT dispatched calls are unfinished.

    JAX returns from a call at once, so the loop would otherwise dispatch a
    whole epoch ahead of the devices: a streamed call would hold its samples
    meanwhile, and a stop signal would wait for all of those calls (the
    Python handler runs once the main thread stops waiting: a README CNN run
    stopped after 3.5 s, at the end of its epoch, instead of after a call).
    """
    in_flight.append(outputs)
    while len(in_flight) > IN_FLIGHT:
        jax.block_until_ready(in_flight.popleft())


class InMemory:
    """Every sample on every device once; each call gathers its batches there."""

    description = "in memory"

    def __init__(
        self, arrays: tuple[np.ndarray, ...], placement: parallel.DataParallel
    ):
        self.placement = placement
        self.data = placement.replicate(arrays)
        self.in_flight = collections.deque()

    def steps_per_call(self, batch_size: int, wanted: int) -> int:
        return wanted

    def calls(self, order, batch_size: int, done: int, steps_per_call: int) -> Iterator:
        """Yields (steps done after it, index rows, (data, xs)) for each call."""
        for stop, rows in chunks(order, batch_size, done, steps_per_call):
            yield stop, rows, (self.data, self.placement.batches(rows))

    def dispatched(self, outputs) -> None:
        """Each call's outputs, once dispatched: see `bound_in_flight`."""
        bound_in_flight(self.in_flight, outputs)


class Streamed:
    """Batches read from memory-mapped arrays by a background thread, each
    process reading only its own devices' share."""

    description = "streamed from disk"

    def __init__(
        self,
        arrays: tuple[np.ndarray, ...],
        placement: parallel.DataParallel,
        counted: bool = False,
    ):
        self.arrays = arrays
        self.placement = placement
        self.counted = counted
        # x as the in-memory path has it on the devices; the labels and
        # weights are in memory already, in their device dtypes.
        x, *rest = arrays
        self.dtypes = [device_dtype(x.dtype), *(array.dtype for array in rest)]
        self.in_flight = collections.deque()
        # A memory-mapped file cut short under the run would kill it with
        # SIGBUS at the first read past its new end: every read first checks
        # that the file still has the size it had here.
        self.sizes = [file_size(array) for array in arrays]

    def steps_per_call(self, batch_size: int, wanted: int) -> int:
        """`wanted`, or fewer steps where a call would hold over CALL_BYTES:
        a divisor of `wanted` where one is near, so that calls still end where
        `wanted` would end them (at every checkpoint step)."""
        sample_bytes = sum(
            dtype.itemsize * int(np.prod(array.shape[1:]))
            for array, dtype in zip(self.arrays, self.dtypes, strict=True)
        )
        fits = max(1, CALL_BYTES // (sample_bytes * batch_size))
        if wanted <= fits:
            return wanted
        divisor = max(n for n in range(1, fits + 1) if wanted % n == 0)
        return divisor if 2 * divisor >= fits else fits

    def calls(self, order, batch_size: int, done: int, steps_per_call: int):
        """Yields (steps done after it, index rows, ((), batches)) for each call,
        read ahead by a background thread that starts reading at once."""
        steps_per_call = self.steps_per_call(batch_size, steps_per_call)
        plan = chunks(order, batch_size, done, steps_per_call)
        return _ReadAhead((stop, rows, ((), self.batches(rows))) for stop, rows in plan)

    def dispatched(self, outputs) -> None:
        """Each call's outputs, once dispatched: see `bound_in_flight`."""
        bound_in_flight(self.in_flight, outputs)

    def batches(self, rows: np.ndarray) -> tuple[jax.Array, ...]:
        """The samples of `rows`, (steps, batch, ...) per array, placed as
        `placement.batches` places index rows."""
        sharding = self.placement.batch_sharding(rows.shape[1])
        return tuple(
            jax.make_array_from_callback(
                (*rows.shape, *array.shape[1:]),
                sharding,
                _Reader(array, dtype, rows, self.counted, size),
            )
            for array, dtype, size in zip(
                self.arrays, self.dtypes, self.sizes, strict=True
            )
        )


def file_size(array: np.ndarray) -> int | None:
    """The size of the file a memory-mapped array maps (the file itself: one
    renamed over its name is another); None for an array in memory."""
    mapping = getattr(array, "_mmap", None)  # np.memmap keeps its mmap here
    return None if mapping is None else mapping.size()


class _ReadAhead:
    """Iterates over `items`, produced by a background thread up to READ_AHEAD
    ahead. The thread stops at the end, at `close()`, or once this object is
    dropped (an epoch cut short by a stop or an error)."""

    def __init__(self, items: Iterator):
        self.ready: queue.Queue = queue.Queue(maxsize=READ_AHEAD)
        self.stopping = threading.Event()
        # The thread holds the queue and the event, not this object, so that
        # dropping it stops the thread (__del__).
        self.thread = threading.Thread(
            target=_produce,
            args=(items, self.ready, self.stopping),
            name="feed",
            daemon=True,
        )
        self.thread.start()

    def __iter__(self):
        return self

    def __next__(self):
        item = self.ready.get()
        if item is None or isinstance(item, BaseException):
            self.close()
            if item is None:
                raise StopIteration
            raise item
        return item

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()

    def __del__(self):
        self.stopping.set()


def _produce(items: Iterator, ready: queue.Queue, stopping: threading.Event) -> None:
    try:
        for item in items:
            if not _offer(item, ready, stopping):
                return
        _offer(None, ready, stopping)  # the end
    except BaseException as error:  # raised in the training thread instead
        _offer(error, ready, stopping)


def _offer(item, ready: queue.Queue, stopping: threading.Event) -> bool:
    """Puts `item` in the queue, unless the consumer stops first."""
    while not stopping.is_set():
        try:
            ready.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class _Reader:
    """The callback that fills one device's part of a batch array.

    JAX asks once per local device; devices that hold the same part (a
    replicated short batch) share one read.
    """

    def __init__(
        self,
        array: np.ndarray,
        dtype: np.dtype,
        rows: np.ndarray,
        counted: bool,
        size: int | None,
    ):
        self.array, self.dtype, self.rows = array, dtype, rows
        self.counted, self.size = counted, size
        self.parts = {}

    def __call__(self, index: tuple[slice, ...]) -> np.ndarray:
        key = tuple((part.start, part.stop) for part in index[:2])
        if key not in self.parts:
            self.parts[key] = self._read(self.rows[index[:2]])
        return self.parts[key]

    def _read(self, rows: np.ndarray) -> np.ndarray:
        if self.size is not None and file_size(self.array) < self.size:
            name = getattr(self.array, "filename", "data")
            raise DataError(
                f"{name}: shrank to {file_size(self.array):,} bytes while this run "
                f"read it ({self.size:,} at its start); a data file must not change "
                "under a run (write a new one and rename it into place)"
            )
        flat = rows.ravel()
        samples = _aligned_empty((len(flat), *self.array.shape[1:]), self.dtype)
        try:
            # One gather for the whole call's rows, straight into the buffer
            # the device gets. (Sorting them first, for reads in file order,
            # cost 3.5 times the gather itself when the file is in the page
            # cache.) The rows come from a permutation: no bounds to check.
            if self.array.dtype == self.dtype:
                np.take(self.array, flat, axis=0, out=samples, mode="wrap")
            else:
                samples[...] = np.take(self.array, flat, axis=0)
        except OSError as e:
            name = getattr(self.array, "filename", "data")
            raise DataError(f"{name}: reading failed ({e})") from None
        if self.counted:
            SAMPLES_READ[getattr(self.array, "filename", "data")] += len(flat)
        return samples.reshape(*rows.shape, *self.array.shape[1:])


def _aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialized array whose data starts on a 64-byte boundary.

    A CPU device then takes it as it is instead of copying it (jax.device_put
    shares an aligned host buffer), which made a streamed call's placement
    about 25 times cheaper; nothing writes to it once it is placed.
    """
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def predict_logits(model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """The model's logits for every sample of `x`, reading a block of rows at a
    time: a memory-mapped x is never loaded whole."""
    blocks = [
        model.predict(
            block.astype(device_dtype(block.dtype), copy=False),
            batch_size=batch_size,
            verbose=0,
        )
        for block in row_blocks(x)
    ]
    return np.concatenate(blocks)
