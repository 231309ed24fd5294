"""Dynamic batching: bounded queues of jobs, cut into batches counted in work units (rows: images
or tiles), run by a model's inference lanes.

- A job is one request's rows. A batch takes jobs from the head of one queue until it holds
  `max_units` rows, splitting the job that does not fit: one n=64 request may span batches, many
  n=1 requests share one.
- A model has one queue (a generator) or one per tile shape (an upscaler), and `lanes` inference
  threads shared by its queues. A free lane takes the next batch itself, from the queue whose
  oldest job has waited longest: no event-loop round trip between one batch and the next, so a
  busy event loop cannot leave the model idle. On CPU there is one lane per core, each running
  ONNX Runtime on one thread and pinned to its core, so whole runs sit side by side instead of
  one run split across cores that the event loop also needs. The lanes may run at a lower
  priority (`inference_nice`), by default not: at nice 19 any other busy process on the machine
  takes nearly all of the model's CPU (2 % of its throughput is left beside two busy loops),
  while alone and under overload nice 0 and 19 measure the same (bench/README.md#niceness).
- When a lane is free, the queue's work runs at once: a lone request never waits for company.
  Only while the model's decode gate is open (requests for it are being decoded, so more work is
  known to be on its way) does a batch that is not full wait, and never longer than `max_delay`
  after its oldest job arrived. While every lane is busy the queue accumulates, so under load
  batches fill by themselves.
- Queues are bounded (QueueFull, with a Retry-After estimate) twice: in work units (memory), and
  in time: a request is refused while the work already queued would take the lanes longer than
  `max_queue_s` at the model's measured pace. A queue in units alone is a different wait on every
  machine (512 tiles: under a second on a GPU, 20 s on two cores); more queue than the lanes need
  to stay busy buys no throughput, only latency, and the time to recover from a burst. The time
  bound counts the work ahead of a request, not the request itself, so an upload larger than the
  bound is still taken once the queue is short. A job whose deadline cannot be met, or whose
  client has gone, is dropped when it reaches the head, before any model time.
- Shedding: once a request has been refused for want of room, the queue refuses all new work
  until it is down to half its bounds, then takes work again. Under a burst the lanes keep half a
  queue of work while requests are refused, and the refusal no longer depends on a request's
  size, so the HTTP layer can refuse one before reading what it asks for (service.transport.door).
- Outputs are checked 1:1 against inputs: a batch of k rows must return k rows.
- A job may carry an `encode` step (its output rows -> image files). A batch's encode steps run
  together, on the lane itself when the model encodes on its lanes (one lane per core: a hand-off
  would only add thread wake-ups), else on the encode pool (the lane goes on to the next batch
  meanwhile); a job that spanned batches is encoded on the encode pool once all its parts are in.
  Results reach the event loop once per batch.

Threads: jobs are created, answered and failed on the event loop; the queues and counters are
guarded by the lanes' condition; lanes and the encode pool hand results back through
call_soon_threadsafe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contract.errors import ClientGone, DeadlineExceeded, InferenceFailed, NotReady, QueueFull, ServiceError
from service.metrics import BatcherMetrics
from service.served.pace import Pace
from service.transport.request_ids import current_request_id

log = logging.getLogger("gan.batching")

RunBatch = Callable[[dict[str, np.ndarray]], np.ndarray]


class DecodeGate:
    """Open while requests for one model are being decoded (an upload read and cut into tiles):
    more work is on its way, so a batch that is not full may wait for it (up to max_delay). A
    request holds it from before its decoding until its work is queued. Entered and left on the
    event loop."""

    def __init__(self) -> None:
        self.decoding = 0
        self.lanes: Lanes | None = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.decoding += 1
        try:
            yield
        finally:
            self.decoding -= 1
            if self.lanes is not None:
                self.lanes.notify()


class Shedding:
    """The queues refusing all new work now (on the event loop): the door (service.transport.door) looks at
    requests only while there are some. `on_room` callbacks run (on the event loop) when a
    shedding queue has drained to where it takes work again."""

    def __init__(self) -> None:
        self._queues: set[Batcher] = set()
        self.on_room: list[Callable[[Batcher], None]] = []

    def __bool__(self) -> bool:
        if not self._queues:
            return False
        for batcher in list(self._queues):
            batcher.shedding  # noqa: B018 (asking ends the shedding of a queue drained enough)
        return bool(self._queues)

    def started(self, batcher: Batcher) -> None:
        self._queues.add(batcher)

    def ended(self, batcher: Batcher) -> None:
        self._queues.discard(batcher)

    def room(self, batcher: Batcher) -> None:
        """On the event loop, called by a lane: the batcher's queue is down to where it takes work."""
        if not batcher.shedding:  # (which ends its shedding)
            for callback in self.on_room:
                callback(batcher)
        else:  # the lane counted otherwise (a batch it had just cut, a new pace): tell again
            batcher._room_told = False


class Admission:
    """Room in a queue held for one request's rows between its admission and their queueing (an
    upload's decoding): a burst of uploads admitted at once cannot overfill the queue, and none
    is refused for want of room after its decoding. Made by Batcher.admit; `units` is what is
    still held. `idle`: the model was idle when the request was admitted, so no estimate refuses
    its rows (see Batcher.enqueue)."""

    def __init__(self, units: int, idle: bool = False) -> None:
        self.units = units
        self.idle = idle


class CancelToken:
    """Set by the HTTP layer when the client disconnects; read by the lanes.

    `on_queued` runs once, when the first of the request's work is queued: watching for a
    disconnect costs a task per request, which a request refused at the door (429, 504) never
    needs."""

    __slots__ = ("_on_queued", "cancelled")

    def __init__(self, on_queued: Callable[[], None] | None = None) -> None:
        self.cancelled = False
        self._on_queued = on_queued

    def cancel(self) -> None:
        self.cancelled = True

    def queued(self) -> None:
        if self._on_queued is not None:
            on_queued, self._on_queued = self._on_queued, None
            on_queued()


@dataclass(eq=False)
class Job:
    inputs: dict[str, np.ndarray]  # every array (units, ...)
    units: int
    deadline: float  # time.monotonic() after which the answer is useless
    cancel: CancelToken
    future: asyncio.Future[Any]
    encode: Callable[[np.ndarray], Any] | None = None  # output rows -> the job's result
    enqueued_at: float = 0.0
    taken: int = 0  # rows handed to batches so far
    parts: dict[int, np.ndarray] = field(default_factory=dict)  # row offset -> output rows
    done_rows: int = 0
    request_id: str = ""  # for the debug log

    def fail(self, error: ServiceError) -> None:
        """On the event loop."""
        if not self.future.done():
            self.future.set_exception(error)


@dataclass
class Slice:
    job: Job
    start: int
    stop: int

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.stop == self.job.units


class Unencoded:
    """A slice's output rows as the model gave them (its job's encode step has not run on them)."""

    __slots__ = ("rows",)

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows


class Lanes:
    """A model's inference threads, shared by its queues (Batchers)."""

    def __init__(
        self,
        name: str,
        count: int,
        gate: DecodeGate | None = None,
        nice: int = 0,
        cores: Sequence[int] = (),
    ) -> None:
        if count < 1:
            raise ValueError("a model needs at least one lane")
        self.name = name
        self.count = count
        self.nice = nice
        self.cores = tuple(cores)  # lane i runs on cores[i % len(cores)]; empty: anywhere
        self.gate = gate or DecodeGate()
        self.gate.lanes = self
        self.condition = threading.Condition()  # guards every queue of this model
        self.ready: dict[Batcher, None] = {}  # the queues with work, in the order they got it
        self.running = 0  # batches on the model now
        self._threads: list[threading.Thread] = []
        self._closing = False

    def notify(self) -> None:
        with self.condition:
            self.condition.notify_all()

    def start(self) -> None:
        for i in range(self.count):
            thread = threading.Thread(
                target=self._lane, args=(i,), name=f"infer-{self.name}-{i}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Let running batches end, then the threads (blocking: call off the event loop)."""
        with self.condition:
            self._closing = True
            self.condition.notify_all()
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def _lane(self, index: int) -> None:
        # Per-thread priority and affinity are Linux features (a thread id is a process id there).
        linux = sys.platform.startswith("linux")
        if self.nice and linux:
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
            except OSError as e:
                log.warning("model %s: could not lower the inference threads' priority: %s", self.name, e)
        if self.cores and linux:
            try:
                os.sched_setaffinity(threading.get_native_id(), {self.cores[index % len(self.cores)]})
            except OSError as e:
                log.warning("model %s: could not pin inference thread %d: %s", self.name, index, e)
        while True:
            with self.condition:
                batcher = self._next_queue()
                if batcher is None:
                    return
                batch = batcher.cut()
                if self.ready:  # work left (a job larger than a batch): a sleeping lane takes it
                    self.condition.notify()
                if not batch:
                    continue
                if self.running == 0:  # the first batch after an idle spell (service.served.pace)
                    batcher.pace.resume()
                self.running += 1
            try:
                batcher.run(batch)
            except Exception:  # a lane must outlive any one batch
                log.exception("model %s: a batch failed outside inference", self.name)
                batcher.fail(batch, InferenceFailed(f"model {self.name}: the batch failed"))
            finally:
                with self.condition:
                    self.running -= 1
                    self.condition.notify_all()

    def _next_queue(self) -> Batcher | None:
        """Under the condition: wait for work, then the queue whose oldest job has waited longest,
        once its batch may be cut. None when closing."""
        while True:
            if self._closing:
                return None
            if not self.ready:
                self.condition.wait()
                continue
            batcher = min(self.ready, key=lambda b: b.oldest())
            hold = batcher.seconds_to_hold(self.gate.decoding)
            if hold <= 0:
                return batcher
            self.condition.wait(hold)


class Batcher:
    """One queue of a model (a generator's, an upscaler's tiles) and how its batches run."""

    def __init__(
        self,
        name: str,
        run: RunBatch,
        lanes: Lanes,
        max_units: int,
        max_delay_s: float,
        max_queue_units: int,
        metrics: BatcherMetrics,
        encode_pool: Executor | None = None,
        encode_on_lane: bool = False,
        shedding: Shedding | None = None,
        max_queue_s: float = 0.0,
        unit: str = "row",
    ) -> None:
        self.name = name
        self.unit = unit  # what a work unit is, for messages: an image, a tile
        self._run = run
        self.lanes = lanes
        # Where jobs are encoded: a job whose rows all ran in one batch, on the lane when
        # encode_on_lane, else on the pool; a job that spanned batches always on the pool (None:
        # asyncio's default executor, for tests of the batcher alone).
        self._encode_pool = encode_pool
        self._encode_on_lane = encode_on_lane or encode_pool is None
        self.max_units = max_units
        self.max_delay_s = max_delay_s
        self.max_queue_units = max_queue_units
        self.max_queue_s = max_queue_s  # 0: bounded in units only
        self._metrics = metrics
        self._queue: deque[Job] = deque()
        self._queued_units = 0
        self._held_units = 0  # admitted, not queued yet (Admission): on the event loop only
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False
        # Seconds per batch (service.served.pace): for the bound in time, Retry-After and deadlines.
        self.pace = Pace()
        # Shedding (see the module's docstring): written on the event loop only. The lanes read
        # the flag (and _room_told, set once per shedding) to tell the loop of room again; it ends
        # when the event loop next asks and finds the queue drained enough.
        self.resume_units = max_queue_units // 2
        self._shedding = False
        self._room_told = False  # the lanes told the event loop the shedding queue has room again
        self._shedding_message = (
            f"model {name}: overloaded; new work is refused until its queue is half empty; retry later"
        )
        self._shedding_queues = shedding if shedding is not None else Shedding()

    def start(self) -> None:
        """On the event loop: the loop that answers this queue's jobs."""
        self._loop = asyncio.get_running_loop()

    def close(self) -> None:
        """Refuse new work from now on (503: the model is out of service, retry)."""
        self._stopped = True

    async def stop(self) -> None:
        """Refuse new work, and fail what is still queued (the lanes are stopped separately: stop
        them first, so that nothing is taken meanwhile)."""
        self._stopped = True
        if self._shedding:  # a retired queue sheds no more
            self._end_shedding()
        with self.lanes.condition:
            self.lanes.ready.pop(self, None)
            jobs = list(self._queue)
            self._queue.clear()
            self._queued_units = 0
            self._metrics.queue_depth.set(0)
        for job in jobs:
            job.fail(NotReady(f"model {self.name}: out of service before this work ran; retry"))

    # --- the request side (event loop) -------------------------------------------------------

    def check_room(self, units: int) -> None:
        """Raise QueueFull unless `units` more work units are taken now: the queue is not shedding
        and they fit."""
        if self.shedding or self._taken_units() + units > self.max_queue_units or self._over_time():
            raise self.refuse()

    @contextlib.contextmanager
    def admit(self, units: int) -> Iterator[Admission]:
        """check_room, then room for `units` held until they are queued (enqueue's `admission`)
        or the block ends (what was not queued is given back)."""
        self.check_room(units)
        admission = Admission(units, idle=self.idle())
        self._held_units += units
        try:
            yield admission
        finally:
            self._held_units -= admission.units

    def _taken_units(self) -> int:
        """Work units queued, and held for admitted requests."""
        return self._queued_units + self._held_units

    def idle(self) -> bool:
        """Whether the model has nothing to do: no batch running on its lanes, nothing queued on
        them, no room held in this queue for an admitted request (every served model has one
        queue). Read on the event loop without the lanes' condition: a batch ending meanwhile
        only makes it idle a moment later."""
        return self.lanes.running == 0 and not self.lanes.ready and self._held_units == 0

    def batch_seconds(self) -> float:
        """The pace now: as measured while a batch runs, decaying while none does."""
        return self.pace.seconds(self.lanes.running > 0)

    def _over_time(self) -> bool:
        """Whether the work queued now would take the lanes longer than max_queue_s. Never while
        it is at most the running batches and one more for each lane: a model whose batches are
        slow keeps its lanes busy."""
        if self.max_queue_s <= 0:
            return False
        rounds = self._rounds()
        return rounds > 2 and rounds * self.batch_seconds() > self.max_queue_s

    def _room_again(self) -> bool:
        """Whether a shedding queue is down to half its bounds (from the event loop or a lane)."""
        if self._taken_units() > self.resume_units:
            return False
        if self.max_queue_s <= 0:
            return True
        rounds = self._rounds()
        return rounds <= 1 or rounds * self.batch_seconds() <= self.max_queue_s / 2

    @property
    def shedding(self) -> bool:
        """Whether all new work is refused now (on the event loop)."""
        if self._shedding and self._room_again():
            self._end_shedding()
        return self._shedding

    def _end_shedding(self) -> None:
        self._shedding = False
        self._metrics.shedding.dec()
        self._shedding_queues.ended(self)

    def refuse(self) -> QueueFull:
        """Count a refusal for want of room and shed from now on (on the event loop): the error to
        answer with."""
        message, retry_after = self.refusal()
        return QueueFull(message, retry_after=retry_after)

    def refusal(self, request_id: str | None = None) -> tuple[str, int]:
        """As refuse, for the door (service.transport.door), which writes its answer without an exception
        (and names the request, which no context names there): (the message, the Retry-After in
        whole seconds: the time the work ahead takes)."""
        self._metrics.rejected("queue_full")
        wait = self.estimated_wait()
        retry_after = max(1, math.ceil(wait))
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "model %s: request %s refused: %s (%d %ss queued or held, about %.3f s of work)",
                self.name,
                request_id or current_request_id(),
                "shedding" if self._shedding else "queue full",
                self._taken_units(),
                self.unit,
                wait,
            )
        if self._shedding:
            return self._shedding_message, retry_after
        self._shedding = True
        self._room_told = False
        self._metrics.shedding.inc()
        self._shedding_queues.started(self)
        return (
            f"model {self.name}: the queue is full ({self._taken_units()} {self.unit}s waiting, about "
            f"{wait:.1f} s of work); retry later",
            retry_after,
        )

    def estimated_wait(self, extra_units: int = 0) -> float:
        """Seconds until `extra_units` more rows would be done: the batches ahead of them and the
        running ones, `lanes` at a time."""
        return self._rounds(self._taken_units() + extra_units) * self.batch_seconds()

    def _rounds(self, units: int | None = None) -> int:
        """The rounds of batches (one per lane at a time) before `units` (default: all taken)
        would be done, after the running ones."""
        units = self._taken_units() if units is None else units
        batches = math.ceil(units / self.max_units) + self.lanes.running
        return math.ceil(batches / self.lanes.count)

    def enqueue(
        self,
        inputs: dict[str, np.ndarray],
        deadline: float,
        cancel: CancelToken,
        encode: Callable[[np.ndarray], Any] | None = None,
        admission: Admission | None = None,
    ) -> asyncio.Future[Any]:
        """Queue one job's rows now (QueueFull, DeadlineExceeded when it cannot be): the future
        gets its output rows (same count, same order), or encode(output rows) when an encode step
        is given. Awaiting it is the caller's; cancelling the token drops rows not yet run.
        admission: the room admit() held for these rows (the request was admitted before some
        work of its own, an upload's decoding); they are then taken whatever came meanwhile.
        The estimate refuses nothing while the model is idle (when the request was admitted, with
        an admission): it can only be corrected by running work (service.served.pace)."""
        units = int(next(iter(inputs.values())).shape[0])
        if units == 0:
            raise ValueError("a job needs at least one row")
        assert self._loop is not None, "the batcher is not started"
        if self._stopped:  # retired, or the service is shutting down: no lane will run it
            raise NotReady(f"model {self.name}: out of service; retry")
        if admission is None:
            self.check_room(units)
        elif units > admission.units:
            raise ValueError(f"{units} rows, but room was held for {admission.units}")
        now = time.monotonic()
        debug = log.isEnabledFor(logging.DEBUG)
        request_id = current_request_id() if debug else ""
        if admission is None:
            idle, before = self.idle(), self._taken_units()
        else:  # what is queued, then these rows: others' held rows will queue behind them
            idle, before = admission.idle, self._queued_units
        done_in = self._rounds(before + units) * self.batch_seconds()  # until these rows are done
        if not idle and now + done_in > deadline:
            self._metrics.rejected("deadline")
            raise DeadlineExceeded(self._too_late(before, units, cancel, deadline - now))
        if debug:
            log.debug(
                "model %s: request %s queued %d %ss (%s; about %.3f s until they are done)",
                self.name,
                request_id,
                units,
                self.unit,
                "model idle" if idle else f"{before} {self.unit}s queued before them",
                done_in,
            )
        job = Job(
            inputs,
            units,
            deadline,
            cancel,
            self._loop.create_future(),
            encode,
            enqueued_at=now,
            request_id=request_id,
        )
        with self.lanes.condition:
            self._queue.append(job)
            self.lanes.ready[self] = None
            self._queued_units += units
            self._metrics.queue_depth.set(self._queued_units)
            self.lanes.condition.notify()
        if admission is not None:
            admission.units -= units
            self._held_units -= units
        cancel.queued()
        return job.future

    def _too_late(self, before: int, units: int, cancel: CancelToken, left: float) -> str:
        """Why rows cannot be done in the `left` seconds: the work queued ahead of their request
        and the request's own (its rows queued earlier, an upload's rows of tiles, share its
        cancel token), apart."""
        with self.lanes.condition:  # the lanes take from the queue meanwhile
            own_queued = sum(j.units - j.taken for j in self._queue if j.cancel is cancel)
        pace = self.batch_seconds()
        ahead = self._rounds(before - own_queued) * pace
        own = self._rounds(before + units) * pace - ahead
        log.debug(
            "model %s: request %s refused: deadline (%.3f s left)", self.name, current_request_id(), left
        )
        return (
            f"model {self.name}: the deadline cannot be met: about {ahead:.3f} s of work is queued ahead of "
            f"this request, and its own {own_queued + units} {self.unit}s take about {own:.3f} s more; "
            f"{max(0.0, left):.3f} s were left"
        )

    async def submit(
        self,
        inputs: dict[str, np.ndarray],
        deadline: float,
        cancel: CancelToken,
        encode: Callable[[np.ndarray], Any] | None = None,
    ) -> Any:
        """Queue one job's rows and wait for its result (see enqueue)."""
        future = self.enqueue(inputs, deadline, cancel, encode)
        try:
            return await future
        except asyncio.CancelledError:
            cancel.cancel()  # the awaiting request was cancelled: its rows must not run
            raise

    @property
    def queued_units(self) -> int:
        return self._queued_units

    # --- the model side (a lane; queue methods under the lanes' condition) ---------------------

    def oldest(self) -> float:
        return self._queue[0].enqueued_at

    def seconds_to_hold(self, decoding: int) -> float:
        """Seconds the next batch should still wait for requests being decoded (<= 0: cut now).
        Only while some are, the batch is not full, and its oldest job has waited < max_delay."""
        if self.max_delay_s <= 0 or decoding <= 0 or self._queued_units >= self.max_units:
            return 0.0
        return self._queue[0].enqueued_at + self.max_delay_s - time.monotonic()

    def cut(self) -> list[Slice]:
        """Take up to max_units rows from the head of the queue, dropping jobs that are done,
        whose client left, or whose deadline this batch would miss."""
        batch: list[Slice] = []
        room = self.max_units
        now = time.monotonic()
        finish_by = now + self.batch_seconds()  # decayed if nothing runs (service.served.pace)
        while self._queue and room > 0:
            job = self._queue[0]
            remaining = job.units - job.taken
            if job.future.done() or job.cancel.cancelled or finish_by > job.deadline:
                self._queue.popleft()
                self._queued_units -= remaining
                if job.future.done():
                    continue
                if job.cancel.cancelled:
                    self._metrics.rejected("client_disconnected")
                    self._answer(job.fail, ClientGone("the client disconnected"))
                else:
                    self._metrics.rejected("deadline")
                    self._answer(
                        job.fail, DeadlineExceeded(f"model {self.name}: the deadline passed while queued")
                    )
                continue
            take = min(remaining, room)
            if job.taken == 0:
                self._metrics.queue_wait.observe(now - job.enqueued_at)
                log.debug(  # (its arguments cost nothing to pass)
                    "model %s: request %s taken into a batch after %.1f ms in the queue",
                    self.name,
                    job.request_id,
                    1000 * (now - job.enqueued_at),
                )
            batch.append(Slice(job, job.taken, job.taken + take))
            job.taken += take
            room -= take
            self._queued_units -= take
            if job.taken == job.units:
                self._queue.popleft()
        if not self._queue:
            self.lanes.ready.pop(self, None)
        if self._shedding and not self._room_told and self._room_again():
            # (a bool the event loop writes, read here: at worst the loop hears of it one batch late)
            self._room_told = True
            self._answer(self._shedding_queues.room, self)
        self._metrics.queue_depth.set(self._queued_units)
        return batch

    def run(self, batch: list[Slice]) -> None:
        """On a lane, outside the condition: run the batch, check it is 1:1, hand the outputs on."""
        units = sum(s.stop - s.start for s in batch)
        try:
            feed = {
                name: np.concatenate([s.job.inputs[name][s.start : s.stop] for s in batch])
                for name in batch[0].job.inputs
            }
            started = time.perf_counter()
            output = self._run(feed)
            elapsed = time.perf_counter() - started
            if output.shape[0] != units:  # outputs must match inputs 1:1
                raise RuntimeError(f"{units} inputs gave {output.shape[0]} outputs")
        except Exception as e:  # only this batch's requests fail; the lanes go on
            log.error(
                "model %s: inference failed on a batch of %d rows: %s: %s",
                self.name,
                units,
                type(e).__name__,
                e,
            )
            # The runtime's own message stays in the log: it can describe the model's internals.
            self.fail(
                batch,
                InferenceFailed(f"model {self.name}: inference failed for this batch; see the server log"),
            )
            return
        self.pace.observe(elapsed)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "model %s: batch of %d %ss (requests %s) ran in %.1f ms; pace %.1f ms",
                self.name,
                units,
                self.unit,
                ",".join(s.job.request_id for s in batch),
                1000 * elapsed,
                1000 * self.pace.measured,
            )
        self._metrics.inference.observe(elapsed)
        self._metrics.batch_size.observe(units)
        self._metrics.batch_fill.observe(units / self.max_units)
        if not self._encode_on_lane and any(s.whole and s.job.encode for s in batch):
            assert self._encode_pool is not None
            with contextlib.suppress(RuntimeError):  # a pool shut down: encode here instead
                self._encode_pool.submit(self._encode_and_answer, batch, output)
                return
        self._encode_and_answer(batch, output)

    def fail(self, batch: list[Slice], error: ServiceError) -> None:
        """From any thread: fail every job of the batch."""
        self._answer(self._fail_batch, batch, error)

    def _encode_and_answer(self, batch: list[Slice], output: np.ndarray) -> None:
        """On the encode pool or the lane: the batch's encode steps, then one hop to the event loop."""
        self._answer(self._distribute, batch, self._encode_slices(batch, output))

    def _encode_slices(self, batch: list[Slice], output: np.ndarray) -> list[Any]:
        """Each slice's result: encode(rows) for a job wholly in this batch, else Unencoded rows."""
        results: list[Any] = []
        offset = 0
        for s in batch:
            rows = output[offset : offset + s.stop - s.start]
            offset += s.stop - s.start
            if s.whole and s.job.encode is not None:
                try:
                    results.append(s.job.encode(rows))
                except Exception as e:
                    results.append(InferenceFailed(f"model {self.name}: encoding failed: {e}"))
            else:
                results.append(Unencoded(rows))
        return results

    def _answer(self, callback: Callable[..., None], *args: Any) -> None:
        """Run callback(*args) on the event loop (from any thread)."""
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(callback, *args)

    # --- answers (event loop) ------------------------------------------------------------------

    @staticmethod
    def _fail_batch(batch: list[Slice], error: ServiceError) -> None:
        for s in batch:
            s.job.fail(error)

    def _distribute(self, batch: list[Slice], results: list[Any]) -> None:
        for s, result in zip(batch, results, strict=True):
            job = s.job
            if job.future.done():
                continue
            if isinstance(result, InferenceFailed):
                job.fail(result)
            elif not isinstance(result, Unencoded):  # encoded with its batch
                job.future.set_result(result)
            else:
                job.parts[s.start] = result.rows
                job.done_rows += s.stop - s.start
                if job.done_rows == job.units:
                    parts = [job.parts[k] for k in sorted(job.parts)]
                    rows = parts[0] if len(parts) == 1 else np.concatenate(parts)
                    if job.encode is None:
                        job.future.set_result(rows)
                    else:
                        self._encode_later(job, rows)

    def _encode_later(self, job: Job, rows: np.ndarray) -> None:
        """A job that spanned batches: its encode step runs on the encode pool, once its rows are in."""
        assert job.encode is not None and self._loop is not None
        pending = self._loop.run_in_executor(self._encode_pool, job.encode, rows)

        def done(f: asyncio.Future[Any]) -> None:
            error = f.exception()  # retrieved even when nobody waits any more
            if job.future.done():
                return
            if error is not None:
                job.fail(InferenceFailed(f"model {self.name}: encoding failed: {error}"))
            else:
                job.future.set_result(f.result())

        pending.add_done_callback(done)
