"""Dynamic batching for one model (or one upscaler tile shape): a bounded queue of jobs, cut into
batches counted in work units (rows: images or tiles), run on an inference thread.

- A job is one request's rows. A batch takes jobs from the head of the queue until it holds
  `max_units` rows, splitting the job that does not fit: one n=64 request may span batches, many
  n=1 requests share one.
- When the model is idle, the queue's work runs at once: a lone request never waits for company.
  Only when more requests are known to be on their way (being decoded for this model) does a
  batch wait for them, and never longer than `max_delay` after its oldest job arrived.
- While a batch runs, the next one accumulates; so under load batches fill by themselves.
- The queue is bounded (QueueFull, with a Retry-After estimate). A job whose deadline cannot be
  met, or whose client has gone, is dropped when it reaches the head, before any model time.
- Outputs are checked 1:1 against inputs: a batch of k rows must return k rows.
- A job may carry a `finish` step (encoding). A batch's finish steps run together on the finish
  pool (one thread hop per batch, not per request) while the next batch runs on the model; a
  job that spanned batches is finished once all its parts are in.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.errors import ClientGone, DeadlineExceeded, InferenceFailed, QueueFull, ServiceError
from service.metrics import BatcherMetrics


class Preparing:
    """Requests being decoded for one model, shared by that model's batchers: while any are, a
    batch that is not full may wait (up to max_delay) for them."""

    def __init__(self) -> None:
        self.count = 0
        self.batchers: list[Batcher] = []

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        self.count += 1
        try:
            yield
        finally:
            self.count -= 1
            for batcher in self.batchers:
                batcher.wake()


class CancelToken:
    """Set by the HTTP layer when the client disconnects; read by the batcher."""

    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass(eq=False)
class Job:
    inputs: dict[str, np.ndarray]  # every array (units, ...)
    deadline: float  # time.monotonic() after which the answer is useless
    cancel: CancelToken
    future: asyncio.Future[Any]
    finish: Callable[[np.ndarray], Any] | None = None  # output rows -> the job's result
    enqueued_at: float = 0.0
    taken: int = 0  # rows handed to batches so far
    parts: dict[int, np.ndarray] = field(default_factory=dict)  # row offset -> output rows
    done_rows: int = 0

    @property
    def units(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])

    def fail(self, error: ServiceError) -> None:
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


class _Rows:
    """Marks a slice's raw output rows (the job's finish step, if any, has not run on them)."""

    __slots__ = ("rows",)

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = rows


class Batcher:
    def __init__(
        self,
        name: str,
        run: Callable[[dict[str, np.ndarray]], np.ndarray],
        executor: Executor,
        max_units: int,
        max_delay_s: float,
        max_queue_units: int,
        metrics: BatcherMetrics,
        preparing: Preparing | None = None,
        finish_executor: Executor | None = None,
    ) -> None:
        self.name = name
        self._run = run
        self._executor = executor
        self._finish_executor = finish_executor
        self.max_units = max_units
        self.max_delay_s = max_delay_s
        self.max_queue_units = max_queue_units
        self._metrics = metrics
        self._queue: deque[Job] = deque()
        self._queued_units = 0
        self.preparing = preparing or Preparing()
        self.preparing.batchers.append(self)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        # Seconds per batch, smoothed: for Retry-After and for deadlines that cannot be met.
        self.batch_seconds = 0.0

    # --- the request side -------------------------------------------------------------------

    def wake(self) -> None:
        self._wakeup.set()

    def check_room(self, units: int) -> None:
        """Raise QueueFull unless `units` more work units fit in the queue."""
        if self._queued_units + units > self.max_queue_units:
            self._metrics.rejected("queue_full")
            retry = max(1.0, math.ceil(self.estimated_wait()))
            raise QueueFull(
                f"model {self.name}: the queue is full ({self._queued_units} work units waiting); "
                "retry later",
                retry_after=retry,
            )

    def estimated_wait(self, extra_units: int = 0) -> float:
        batches = math.ceil((self._queued_units + extra_units) / self.max_units) + (1 if self._busy else 0)
        return batches * self.batch_seconds

    async def submit(
        self,
        inputs: dict[str, np.ndarray],
        deadline: float,
        cancel: CancelToken,
        finish: Callable[[np.ndarray], Any] | None = None,
    ) -> Any:
        """Queue one job's rows and wait for its output rows (same count, same order), or for
        finish(output rows) when a finish step is given."""
        job = Job(inputs, deadline, cancel, asyncio.get_running_loop().create_future(), finish)
        units = job.units
        if units == 0:
            raise ValueError("a job needs at least one row")
        self.check_room(units)
        now = time.monotonic()
        if now + self.estimated_wait(units) > deadline:
            self._metrics.rejected("deadline")
            raise DeadlineExceeded(
                f"model {self.name}: the deadline cannot be met (about {self.estimated_wait(units):.3f} s of "
                "work is ahead of this request)"
            )
        job.enqueued_at = now
        self._queue.append(job)
        self._queued_units += units
        self._metrics.queue_depth.set(self._queued_units)
        self._wakeup.set()
        try:
            return await job.future
        except asyncio.CancelledError:
            cancel.cancel()  # the awaiting request was cancelled: its rows must not run
            raise

    # --- the model side ---------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job in self._queue:
            job.fail(ServiceError("the service is shutting down"))
        self._queue.clear()

    @property
    def queued_units(self) -> int:
        return self._queued_units

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._wait_for_company()
            batch = self._cut()
            if not batch:
                continue
            feed = {
                name: np.concatenate([s.job.inputs[name][s.start : s.stop] for s in batch])
                for name in batch[0].job.inputs
            }
            units = sum(s.stop - s.start for s in batch)
            self._busy = True
            try:
                output, elapsed = await loop.run_in_executor(self._executor, self._infer, feed, units)
            except Exception as e:  # only this batch's requests fail; the loop goes on
                for s in batch:
                    s.job.fail(
                        InferenceFailed(f"model {self.name}: inference failed: {type(e).__name__}: {e}")
                    )
                continue
            finally:
                self._busy = False
            self.batch_seconds = (
                elapsed if self.batch_seconds == 0 else 0.8 * self.batch_seconds + 0.2 * elapsed
            )
            self._metrics.inference.observe(elapsed)
            self._metrics.batch_size.observe(units)
            self._metrics.batch_fill.observe(units / self.max_units)
            if self._finish_executor is None or not any(s.whole and s.job.finish for s in batch):
                self._distribute(batch, self._finish_slices(batch, output))
                continue
            finishing = loop.run_in_executor(self._finish_executor, self._finish_slices, batch, output)
            finishing.add_done_callback(functools.partial(self._finished, batch))

    def _infer(self, feed: dict[str, np.ndarray], units: int) -> tuple[np.ndarray, float]:
        """On the inference thread: run the batch and check that it is 1:1."""
        started = time.perf_counter()
        output = self._run(feed)
        elapsed = time.perf_counter() - started
        if output.shape[0] != units:  # outputs must match inputs 1:1
            raise RuntimeError(f"{units} inputs gave {output.shape[0]} outputs")
        return output, elapsed

    def _finished(self, batch: list[Slice], finishing: asyncio.Future[list[Any]]) -> None:
        if finishing.exception() is not None:
            error = InferenceFailed(f"model {self.name}: postprocessing failed: {finishing.exception()}")
            for s in batch:
                s.job.fail(error)
            return
        self._distribute(batch, finishing.result())

    def _finish_slices(self, batch: list[Slice], output: np.ndarray) -> list[Any]:
        """Each slice's result: finish(rows) for a job wholly in this batch, else its raw rows."""
        results: list[Any] = []
        offset = 0
        for s in batch:
            rows = output[offset : offset + s.stop - s.start]
            offset += s.stop - s.start
            if s.whole and s.job.finish is not None:
                try:
                    results.append(s.job.finish(rows))
                except Exception as e:
                    results.append(InferenceFailed(f"model {self.name}: postprocessing failed: {e}"))
            else:
                results.append(_Rows(rows))
        return results

    async def _wait_for_company(self) -> None:
        """Hold the batch open only while requests for this model are being decoded, the batch is
        not full, and its oldest job has waited less than max_delay."""
        if self.max_delay_s <= 0:
            return
        close_at = self._queue[0].enqueued_at + self.max_delay_s
        while self.preparing.count > 0 and self._queued_units < self.max_units:
            left = close_at - time.monotonic()
            if left <= 0:
                return
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), left)

    def _cut(self) -> list[Slice]:
        """Take up to max_units rows from the head of the queue, dropping jobs that are done,
        whose client left, or whose deadline this batch would miss."""
        batch: list[Slice] = []
        room = self.max_units
        now = time.monotonic()
        finish_by = now + self.batch_seconds
        while self._queue and room > 0:
            job = self._queue[0]
            remaining = job.units - job.taken
            if job.future.done() or job.cancel.cancelled or finish_by > job.deadline:
                self._queue.popleft()
                self._queued_units -= remaining
                if job.cancel.cancelled and not job.future.done():
                    self._metrics.rejected("client_disconnected")
                    job.fail(ClientGone("the client disconnected"))
                elif not job.future.done():
                    self._metrics.rejected("deadline")
                    job.fail(DeadlineExceeded(f"model {self.name}: the deadline passed while queued"))
                continue
            take = min(remaining, room)
            if job.taken == 0:
                self._metrics.queue_wait.observe(now - job.enqueued_at)
            batch.append(Slice(job, job.taken, job.taken + take))
            job.taken += take
            room -= take
            self._queued_units -= take
            if job.taken == job.units:
                self._queue.popleft()
        self._metrics.queue_depth.set(self._queued_units)
        return batch

    def _distribute(self, batch: list[Slice], results: list[Any]) -> None:
        for s, result in zip(batch, results, strict=True):
            job = s.job
            if job.future.done():
                continue
            if isinstance(result, InferenceFailed):
                job.fail(result)
            elif not isinstance(result, _Rows):  # finished on the inference thread
                job.future.set_result(result)
            else:
                job.parts[s.start] = result.rows
                job.done_rows += s.stop - s.start
                if job.done_rows == job.units:
                    parts = [job.parts[k] for k in sorted(job.parts)]
                    rows = parts[0] if len(parts) == 1 else np.concatenate(parts)
                    if job.finish is None:
                        job.future.set_result(rows)
                    else:
                        self._finish_later(job, rows)

    def _finish_later(self, job: Job, rows: np.ndarray) -> None:
        """A job that spanned batches: its finish step runs on the finish pool."""
        assert job.finish is not None
        pending = asyncio.get_running_loop().run_in_executor(self._finish_executor, job.finish, rows)

        def done(f: asyncio.Future[Any]) -> None:
            if job.future.done():
                return
            if f.exception() is not None:
                job.fail(InferenceFailed(f"model {self.name}: postprocessing failed: {f.exception()}"))
            else:
                job.future.set_result(f.result())

        pending.add_done_callback(done)
