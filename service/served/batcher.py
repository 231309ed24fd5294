"""Dynamic batching: a model's queue of jobs (one request's rows each), cut into batches of at
most `max_units` work units (images, tiles) that its inference lanes (service.served.lanes) run.

It owns forming batches (a job split across batches, many small jobs sharing one, jobs dropped
before any model time once their client left or their deadline cannot be met), running them,
checking outputs 1:1 against inputs, encoding them (on the lane, or on the encode pool) and
answering on the event loop. What may enter the queue is decided apart, by its admission
(service.served.admission). Threads: jobs are made and answered on the event loop; the queue is
guarded by the lanes' condition; lanes and the encode pool answer through call_soon_threadsafe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contract.errors import ClientGone, DeadlineExceeded, InferenceFailed, NotReady, ServiceError
from service.metrics import BatcherMetrics
from service.request_ids import current_request_id
from service.served.admission import Admission, HeldRoom
from service.served.lanes import Lanes

log = logging.getLogger("gan.batching")

RunBatch = Callable[[dict[str, np.ndarray]], np.ndarray]


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


class Batcher:
    """One queue of a model (a generator's, an upscaler's tiles) and how its batches run."""

    def __init__(
        self, name: str, run: RunBatch, lanes: Lanes, admission: Admission, metrics: BatcherMetrics
    ) -> None:
        self.name = name
        self.unit = admission.unit
        self._run = run
        self.lanes = lanes
        self._admission = admission
        self.pace = admission.pace  # measured here, read by the admission's estimates
        self.max_units = lanes.max_units
        self.max_delay_s = lanes.gate.max_delay_s
        # Where jobs are encoded: a job whose rows all ran in one batch, on the lane when the lanes
        # encode, else on the pool; a job that spanned batches always on the pool (None: asyncio's
        # default executor, for tests of the batcher alone).
        self._encode_pool = lanes.encode_pool
        self._encode_on_lane = lanes.encode_on_lane or lanes.encode_pool is None
        self._metrics = metrics
        self._queue: deque[Job] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False

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
        self._admission.close()
        with self.lanes.condition:
            self.lanes.ready.pop(self, None)
            jobs = list(self._queue)
            self._queue.clear()
            self._admission.queued_units = 0
            self._metrics.queue_depth.set(0)
        for job in jobs:
            job.fail(NotReady(f"model {self.name}: out of service before this work ran; retry"))

    # --- the request side (event loop) -------------------------------------------------------

    def enqueue(
        self,
        inputs: dict[str, np.ndarray],
        deadline: float,
        cancel: CancelToken,
        encode: Callable[[np.ndarray], Any] | None = None,
        held: HeldRoom | None = None,
    ) -> asyncio.Future[Any]:
        """Queue one job's rows now, as its admission allows (QueueFull, DeadlineExceeded when it
        does not; held: the room it held for them, Admission.admit_rows): the future gets its
        output rows (same count, same order), or encode(output rows) when an encode step is
        given. Awaiting it is the caller's; cancelling the token drops rows not yet run."""
        units = int(next(iter(inputs.values())).shape[0])
        if units == 0:
            raise ValueError("a job needs at least one row")
        assert self._loop is not None, "the batcher is not started"
        if self._stopped:  # retired, or the service is shutting down: no lane will run it
            raise NotReady(f"model {self.name}: out of service; retry")
        admission = self._admission
        now = time.monotonic()
        ahead = admission.admit_rows(units, deadline, now, held)
        if ahead is not None:
            raise admission.too_late(ahead, units, self._own_queued(cancel), deadline - now)
        job = Job(
            inputs,
            units,
            deadline,
            cancel,
            self._loop.create_future(),
            encode,
            enqueued_at=now,
            request_id=current_request_id() if log.isEnabledFor(logging.DEBUG) else "",
        )
        with self.lanes.condition:
            self._queue.append(job)
            self.lanes.ready[self] = None
            admission.queued_units += units
            self._metrics.queue_depth.set(admission.queued_units)
            self.lanes.condition.notify()
        if held is not None:
            admission.queued_held(held, units)
        cancel.queued()
        return job.future

    def _own_queued(self, cancel: CancelToken) -> int:
        """The units a request (its cancel token) has in the queue now: its rows queued earlier,
        an upload's rows of tiles."""
        with self.lanes.condition:  # the lanes take from the queue meanwhile
            return sum(j.units - j.taken for j in self._queue if j.cancel is cancel)

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

    # --- the model side (a lane; queue methods under the lanes' condition) ---------------------

    def oldest(self) -> float:
        return self._queue[0].enqueued_at

    def seconds_to_hold(self, decoding: int) -> float:
        """Seconds the next batch should still wait for requests being decoded (<= 0: cut now).
        Only while some are, the batch is not full, and its oldest job has waited < max_delay."""
        if self.max_delay_s <= 0 or decoding <= 0 or self._admission.queued_units >= self.max_units:
            return 0.0
        return self._queue[0].enqueued_at + self.max_delay_s - time.monotonic()

    def cut(self) -> list[Slice]:
        """Take up to max_units rows from the head of the queue, dropping jobs that are done,
        whose client left, or whose deadline this batch would miss."""
        batch: list[Slice] = []
        room = self.max_units
        now = time.monotonic()
        finish_by = now + self.pace.seconds(self.lanes.running > 0)  # decayed if nothing runs
        left = 0  # units that leave the queue
        while self._queue and room > 0:
            job = self._queue[0]
            remaining = job.units - job.taken
            if job.future.done() or job.cancel.cancelled or finish_by > job.deadline:
                self._queue.popleft()
                left += remaining
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
            left += take
            if job.taken == job.units:
                self._queue.popleft()
        if not self._queue:
            self.lanes.ready.pop(self, None)
        admission = self._admission
        admission.queued_units -= left
        if admission.room_found():
            self._answer(admission.room_again)
        self._metrics.queue_depth.set(admission.queued_units)
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
