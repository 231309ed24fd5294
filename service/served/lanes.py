"""A model's inference lanes: the threads that take batches from its queues and run them.

A free lane cuts the next batch itself, from the queue whose oldest job has waited longest: no
event-loop round trip between one batch and the next, so a busy event loop cannot leave the model
idle. A batch that is not full waits only while the model's decode gate is open (requests for it
are being decoded) and never longer than its max delay. On CPU the lanes are pinned one per core
and may run at a lower priority (`inference_nice`); see docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor
from typing import Any, Protocol

from contract.errors import InferenceFailed, ServiceError
from service.served.pace import Pace

log = logging.getLogger("gan.batching")


class LaneQueue(Protocol):
    """What the lanes ask of a queue (service.served.batcher.Batcher), under their condition but
    `run` and `fail`. A batch is what `cut` gives."""

    @property
    def pace(self) -> Pace: ...

    def oldest(self) -> float: ...

    def seconds_to_hold(self, decoding: int) -> float: ...

    def cut(self) -> list[Any]: ...

    def run(self, batch: list[Any]) -> None: ...

    def fail(self, batch: list[Any], error: ServiceError) -> None: ...


class DecodeGate:
    """Open while requests for one model are being decoded (an upload read and cut into tiles):
    more work is on its way, so a batch that is not full may wait for it (up to max_delay_s). A
    request holds it from before its decoding until its work is queued. Entered and left on the
    event loop."""

    def __init__(self, max_delay_s: float = 0.0) -> None:
        self.max_delay_s = max_delay_s  # the longest a batch waits for them after its oldest job came
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


class Lanes:
    """A model's inference threads, shared by its queues (Batchers): `count` batches at once, each
    of at most `max_units` work units (the runtime's, service.served.buckets). A batch's outputs
    are encoded on the lane itself when `encode_on_lane` (one lane per core: a hand-off would only
    add thread wake-ups), else on `encode_pool` while the lane goes on to the next batch."""

    def __init__(
        self,
        name: str,
        count: int,
        max_units: int,
        gate: DecodeGate | None = None,
        nice: int = 0,
        cores: Sequence[int] = (),
        encode_pool: Executor | None = None,
        encode_on_lane: bool = False,
    ) -> None:
        if count < 1:
            raise ValueError("a model needs at least one lane")
        self.name = name
        self.count = count
        self.max_units = max_units
        self.encode_pool = encode_pool
        self.encode_on_lane = encode_on_lane
        self.nice = nice
        self.cores = tuple(cores)  # lane i runs on cores[i % len(cores)]; empty: anywhere
        self.gate = gate or DecodeGate()
        self.gate.lanes = self
        self.condition = threading.Condition()  # guards every queue of this model
        self.ready: dict[LaneQueue, None] = {}  # the queues with work, in the order they got it
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

    def _next_queue(self) -> LaneQueue | None:
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
