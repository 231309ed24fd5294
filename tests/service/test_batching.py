"""The batching engine on its own (no HTTP, no ONNX): lanes, queues, splitting, failures."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from contract.errors import ClientGone, InferenceFailed, QueueFull
from service.config import Settings
from service.metrics import BatcherMetrics, ServiceMetrics
from service.served.admission import Admission, QueuePolicy
from service.served.batcher import Batcher, CancelToken
from service.served.lanes import Lanes
from service.served.providers import CPU, CUDA
from service.served.runtime import Parallelism, plan_parallelism

FAR = 3600.0  # a deadline nobody reaches


def queue_on(
    lanes: Lanes,
    run: Callable[[dict[str, np.ndarray]], np.ndarray],
    metrics: ServiceMetrics,
    name: str = "m",
    max_queue_units: int = 1000,
) -> Batcher:
    """A queue on these lanes, bounded in units only, its metrics under the lanes' name."""
    queue_metrics = BatcherMetrics(metrics, lanes.name)
    admission = Admission(name, QueuePolicy(max_queue_units, 0.0), lanes, queue_metrics)
    return Batcher(name, run, lanes, admission, queue_metrics)


def make(
    run: Callable[[dict[str, np.ndarray]], np.ndarray], lanes: int = 1, max_units: int = 4, name: str = "m"
) -> tuple[Batcher, Lanes, ServiceMetrics]:
    metrics = ServiceMetrics()
    pool = Lanes(name, lanes, max_units)
    return queue_on(pool, run, metrics, name), pool, metrics


def rows(start: int, count: int) -> dict[str, np.ndarray]:
    return {"x": np.arange(start, start + count, dtype=np.int64)}


def doubled(feed: dict[str, np.ndarray]) -> np.ndarray:
    return feed["x"] * 2


def test_a_job_larger_than_a_batch_is_split_and_reassembled_in_order() -> None:
    sizes: list[int] = []

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        sizes.append(len(feed["x"]))
        time.sleep(0.01 * (len(sizes) % 2))  # the batches finish out of order on two lanes
        return doubled(feed)

    async def scenario() -> np.ndarray:
        batcher, lanes, _ = make(run, lanes=2, max_units=4)
        batcher.start()
        lanes.start()
        try:
            return await batcher.submit(rows(0, 10), time.monotonic() + FAR, CancelToken())
        finally:
            lanes.stop()

    out = asyncio.run(scenario())
    assert out.tolist() == [2 * i for i in range(10)]
    assert sorted(sizes) == [2, 4, 4]


def test_two_lanes_run_two_batches_at_once() -> None:
    both_running = threading.Barrier(2, timeout=10)

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        both_running.wait()  # raises BrokenBarrierError unless a second batch runs meanwhile
        return doubled(feed)

    async def scenario() -> list[np.ndarray]:
        batcher, lanes, _ = make(run, lanes=2, max_units=1)
        batcher.start()
        lanes.start()
        try:
            deadline = time.monotonic() + FAR
            return list(
                await asyncio.gather(
                    batcher.submit(rows(0, 1), deadline, CancelToken()),
                    batcher.submit(rows(5, 1), deadline, CancelToken()),
                )
            )
        finally:
            lanes.stop()

    assert [a.tolist() for a in asyncio.run(scenario())] == [[0], [10]]


def test_a_failing_batch_fails_only_its_own_requests_and_the_lane_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        if 13 in feed["x"]:
            raise RuntimeError("bad luck")
        return doubled(feed)

    async def scenario() -> tuple[BaseException | np.ndarray, ...]:
        batcher, lanes, _ = make(run, lanes=1, max_units=1)
        batcher.start()
        lanes.start()
        try:
            deadline = time.monotonic() + FAR
            return tuple(
                await asyncio.gather(
                    batcher.submit(rows(13, 1), deadline, CancelToken()),
                    batcher.submit(rows(1, 1), deadline, CancelToken()),
                    return_exceptions=True,
                )
            )
        finally:
            lanes.stop()

    failed, fine = asyncio.run(scenario())
    assert isinstance(failed, InferenceFailed) and "see the server log" in str(failed)
    assert "model m: inference failed on a batch of 1 rows: RuntimeError: bad luck" in caplog.text
    assert isinstance(fine, np.ndarray) and fine.tolist() == [2]


def test_outputs_must_match_inputs_one_to_one(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        batcher, lanes, _ = make(lambda feed: np.zeros(len(feed["x"]) + 1), max_units=4)
        batcher.start()
        lanes.start()
        try:
            with pytest.raises(InferenceFailed, match="inference failed"):
                await batcher.submit(rows(0, 3), time.monotonic() + FAR, CancelToken())
        finally:
            lanes.stop()

    asyncio.run(scenario())
    assert "RuntimeError: 3 inputs gave 4 outputs" in caplog.text


def test_a_cancelled_job_never_reaches_the_model() -> None:
    seen: list[int] = []
    gate = threading.Event()

    def run(feed: dict[str, np.ndarray]) -> np.ndarray:
        gate.wait(10)
        seen.extend(feed["x"].tolist())
        return doubled(feed)

    async def scenario() -> tuple[BaseException | np.ndarray, ...]:
        batcher, lanes, metrics = make(run, lanes=1, max_units=1)
        batcher.start()
        lanes.start()
        try:
            deadline = time.monotonic() + FAR
            first = asyncio.ensure_future(batcher.submit(rows(1, 1), deadline, CancelToken()))
            await asyncio.sleep(0.05)  # the first job is on the model, waiting at the gate
            token = CancelToken()
            second = asyncio.ensure_future(batcher.submit(rows(2, 1), deadline, token))
            await asyncio.sleep(0.01)
            token.cancel()  # its client left while it was queued
            gate.set()
            results = tuple(await asyncio.gather(first, second, return_exceptions=True))
            assert metrics.rejections.labels("m", "client_disconnected")._value.get() == 1
            return results
        finally:
            lanes.stop()

    first, second = asyncio.run(scenario())
    assert isinstance(first, np.ndarray) and first.tolist() == [2]
    assert isinstance(second, ClientGone)
    assert seen == [1]


def test_the_queue_whose_oldest_job_waited_longest_goes_first() -> None:
    order: list[str] = []
    gate = threading.Event()

    def runner(name: str) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
        def run(feed: dict[str, np.ndarray]) -> np.ndarray:
            gate.wait(10)
            order.append(name)
            return doubled(feed)

        return run

    async def scenario() -> None:
        metrics = ServiceMetrics()
        lanes = Lanes("m", 1, 1)
        queues = {name: queue_on(lanes, runner(name), metrics, name, 100) for name in ("a", "b")}
        for q in queues.values():
            q.start()
        lanes.start()
        try:
            deadline = time.monotonic() + FAR
            jobs = [asyncio.ensure_future(queues["a"].submit(rows(0, 1), deadline, CancelToken()))]
            await asyncio.sleep(0.05)  # "a" holds the only lane, waiting at the gate
            for name in ("b", "a", "b"):
                jobs.append(asyncio.ensure_future(queues[name].submit(rows(0, 1), deadline, CancelToken())))
                await asyncio.sleep(0.01)
            gate.set()
            await asyncio.gather(*jobs)
        finally:
            lanes.stop()

    asyncio.run(scenario())
    # after the first: b (queued first), then a, then b; never all of one queue before the other
    assert order == ["a", "b", "a", "b"]


@dataclass
class IdleQueue:
    """A started queue whose lanes never run (what is queued stays queued); on the event loop."""

    batcher: Batcher
    admission: Admission
    metrics: ServiceMetrics

    @property
    def queued(self) -> float:
        """The queue's depth, as the metrics say it."""
        return self.metrics.registry.get_sample_value("gan_queue_depth_units", {"model": "m"}) or 0


def idle_queue(max_units: int, max_queue_units: int, max_queue_s: float, lanes: int = 2) -> IdleQueue:
    metrics = ServiceMetrics()
    pool = Lanes("m", lanes, max_units)
    queue_metrics = BatcherMetrics(metrics, "m")
    admission = Admission("m", QueuePolicy(max_queue_units, max_queue_s), pool, queue_metrics)
    batcher = Batcher("m", doubled, pool, admission, queue_metrics)
    batcher.start()
    return IdleQueue(batcher, admission, metrics)


def test_a_queue_is_bounded_in_seconds_of_work_and_sheds_until_half_of_them() -> None:
    async def scenario() -> None:
        # batches of 4 rows, 0.25 s each, on 2 lanes: 1 s of work is 4 rounds, 32 rows
        queue = idle_queue(max_units=4, max_queue_units=1000, max_queue_s=1.0)
        batcher, admission = queue.batcher, queue.admission
        batcher.pace.seed(0.25)
        deadline = time.monotonic() + FAR
        for i in range(9):  # the 9th still finds exactly 1 s of work ahead of it
            batcher.enqueue(rows(i, 4), deadline, CancelToken())
        assert queue.queued == 36  # far under the 1000 rows the unit bound allows
        with pytest.raises(QueueFull) as refused:
            admission.check_room(1)
        assert "36 rows waiting, about 1.2 s of work" in refused.value.message
        assert refused.value.retry_after == 2  # 5 rounds of 0.25 s, in whole seconds
        # a lane that saw room where the event loop does not (it counted otherwise) may tell again
        admission._room_told = True
        admission.room_again()
        assert admission.shedding and not admission._room_told
        # shedding until the work is down to half a second (2 rounds, 16 rows)
        while queue.queued > 16:
            assert admission.shedding
            batcher.cut()
        assert not admission.shedding
        admission.check_room(1)

    asyncio.run(scenario())


def test_a_large_request_is_taken_when_little_work_is_ahead_and_slow_batches_always_get_a_round() -> None:
    async def scenario() -> None:
        deadline = time.monotonic() + FAR
        queue = idle_queue(max_units=4, max_queue_units=1000, max_queue_s=1.0)
        queue.batcher.pace.seed(0.25)
        queue.batcher.enqueue(rows(0, 100), deadline, CancelToken())  # 13 rounds, 3.25 s: nothing was ahead
        with pytest.raises(QueueFull):
            queue.admission.check_room(1)
        # batches of 2 s against a bound of 1 s: the running batches and one more per lane are taken
        slow = idle_queue(max_units=4, max_queue_units=1000, max_queue_s=1.0)
        slow.batcher.pace.seed(2.0)
        for i in range(5):  # 16 rows ahead of the 5th: 2 rounds
            slow.batcher.enqueue(rows(i, 4), deadline, CancelToken())
        with pytest.raises(QueueFull):
            slow.admission.check_room(1)  # 20 rows: 3 rounds, 6 s

    asyncio.run(scenario())


def test_room_held_for_an_admitted_request_counts_until_its_rows_are_queued() -> None:
    async def scenario() -> None:
        deadline = time.monotonic() + FAR
        queue = idle_queue(max_units=4, max_queue_units=40, max_queue_s=0.0)
        batcher, admission = queue.batcher, queue.admission
        with admission.admit(30) as held:  # an upload being decoded
            with pytest.raises(QueueFull):
                admission.check_room(11)  # 30 held + 11 > 40: refused, and the queue sheds
            assert admission.shedding
            # the admitted request's rows are taken all the same, in the room held for them
            batcher.enqueue(rows(0, 10), deadline, CancelToken(), held=held)
            assert (held.units, admission.held_units, queue.queued) == (20, 20, 10)
            with pytest.raises(ValueError, match="room was held for 20"):
                batcher.enqueue(rows(0, 21), deadline, CancelToken(), held=held)
        # the 20 rows never queued are given back: 10 queued, under half the bound
        assert admission.held_units == 0
        assert not admission.shedding
        admission.check_room(30)
        with pytest.raises(QueueFull), admission.admit(31):
            raise AssertionError("admitted past the bound")

    asyncio.run(scenario())


def test_an_admitted_uploads_deadline_counts_what_is_queued_not_what_others_hold() -> None:
    async def scenario() -> None:
        queue = idle_queue(max_units=4, max_queue_units=1000, max_queue_s=0.0)
        batcher, admission = queue.batcher, queue.admission
        batcher.pace.seed(0.25)
        batcher.enqueue(rows(0, 4), time.monotonic() + FAR, CancelToken())  # the model is not idle
        with admission.admit(8) as first, admission.admit(40):  # the second queues behind the first
            # 4 + 8 rows: 3 batches, 2 rounds, 0.5 s; the other's 40 held rows would make it 1.75 s
            batcher.enqueue(rows(0, 8), time.monotonic() + 0.6, CancelToken(), held=first)
        assert queue.queued == 12

    asyncio.run(scenario())


def test_parallelism_plan() -> None:
    auto = Settings()
    two, sixteen = [0, 1], list(range(16))
    # one single-threaded run per core, pinned one per core, encoding on the lane
    assert plan_parallelism(auto, CPU, two) == Parallelism(2, 1, (0, 1), encode_on_lane=True)
    assert plan_parallelism(auto, CPU, [3, 5]).pinned_cores == (3, 5)  # the cores we may use
    assert plan_parallelism(auto, CPU, sixteen) == Parallelism(16, 1, tuple(sixteen), encode_on_lane=True)
    assert plan_parallelism(Settings(pin_inference_threads=False), CPU, two) == Parallelism(
        2, 1, (), encode_on_lane=True
    )
    # fewer runs than cores: each run gets its share of threads; unpinned; the pool encodes
    assert plan_parallelism(Settings(concurrent_batches=2), CPU, sixteen) == Parallelism(2, 8)
    assert plan_parallelism(Settings(concurrent_batches=1, intra_op_threads=3), CPU, sixteen) == Parallelism(
        1, 3
    )
    assert plan_parallelism(auto, CPU, [0]) == Parallelism(1, 1, (), encode_on_lane=True)
    # On the device: two lanes, one making its batch while the other's runs; one with CUDA graphs.
    assert plan_parallelism(auto, CUDA, sixteen) == Parallelism(2, 0)
    assert plan_parallelism(Settings(cuda_graphs=True), CUDA, sixteen) == Parallelism(1, 0)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="thread affinity is a Linux feature")
def test_lanes_are_pinned_and_niced() -> None:
    """Each lane thread runs on its own core from the list, at the nice value given."""
    cores = sorted(os.sched_getaffinity(0))
    lanes = Lanes("m", 2, 1, nice=5, cores=cores)
    seen: dict[str, tuple[set[int], int]] = {}

    def record(feed: dict[str, np.ndarray]) -> np.ndarray:
        tid = threading.get_native_id()
        seen[threading.current_thread().name] = (
            os.sched_getaffinity(tid),
            os.getpriority(os.PRIO_PROCESS, tid),
        )
        time.sleep(0.05)  # keep this lane busy so the next job goes to the other one
        return feed["x"]

    async def scenario() -> None:
        batcher = queue_on(lanes, record, ServiceMetrics(), max_queue_units=100)
        batcher.start()
        lanes.start()
        try:
            deadline = time.monotonic() + FAR
            await asyncio.gather(*(batcher.submit(rows(i, 1), deadline, CancelToken()) for i in range(2)))
        finally:
            lanes.stop()

    asyncio.run(scenario())
    assert seen == {
        "infer-m-0": ({cores[0]}, 5),
        "infer-m-1": ({cores[1 % len(cores)]}, 5),
    }


@pytest.mark.parametrize("encode_on_lane", [True, False])
def test_jobs_are_encoded_on_their_lane_or_the_encode_pool_never_elsewhere(encode_on_lane: bool) -> None:
    """A job wholly in one batch is encoded on the lane (when the model encodes on its lanes) or
    the encode pool; a job that spanned batches is encoded on the encode pool once all its rows
    are in (it used to go to asyncio's default executor)."""
    encoded_on: dict[int, str] = {}

    def encoder(job: int) -> Callable[[np.ndarray], list[int]]:
        def encode(out: np.ndarray) -> list[int]:
            encoded_on[job] = threading.current_thread().name
            return out.tolist()

        return encode

    async def scenario() -> list[list[int]]:
        metrics = ServiceMetrics()
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="encode")
        lanes = Lanes("m", 1, 4, encode_pool=pool, encode_on_lane=encode_on_lane)
        batcher = queue_on(lanes, doubled, metrics, max_queue_units=100)
        batcher.start()
        lanes.start()
        try:
            deadline = time.monotonic() + FAR
            return list(
                await asyncio.gather(
                    batcher.submit(rows(0, 2), deadline, CancelToken(), encoder(0)),  # one batch
                    batcher.submit(rows(10, 9), deadline, CancelToken(), encoder(1)),  # three batches
                )
            )
        finally:
            lanes.stop()
            pool.shutdown()

    small, large = asyncio.run(scenario())
    assert small == [0, 2] and large == [2 * i for i in range(10, 19)]
    assert encoded_on[0].startswith("infer-m" if encode_on_lane else "encode")
    assert encoded_on[1].startswith("encode")
