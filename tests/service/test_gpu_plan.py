"""The plan for a GPU host, run with a fake slow device (no GPU, no ONNX): the host's cores work
around the device, so that the device finds the next batch ready when it finishes one."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np

from service.config import Settings
from service.metrics import BatcherMetrics, ServiceMetrics
from service.served.admission import Admission, QueuePolicy
from service.served.batcher import Batcher, CancelToken
from service.served.lanes import Lanes
from service.served.providers import CPU, CUDA
from service.served.runtime import plan_encode_threads, plan_parallelism

SIXTEEN = list(range(16))


class FakeDevice:
    """One stream: a batch runs on it alone. A batch on it waits until another batch's rows are
    being made on the host (or were made and wait for the stream), or gives up after `patience` s
    and says so: what a device that never idles between batches needs."""

    def __init__(self, batches: int, patience: float = 10.0) -> None:
        self.batches = batches
        self.patience = patience
        self.stream = threading.Lock()
        self.changed = threading.Condition()
        self.made = 0  # batches whose rows the host has started making
        self.ran = 0  # batches that got the device
        self.ready_in_time: list[bool] = []

    def run_batch(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        with self.changed:  # the host makes this batch's rows (latents, noise, tiles)...
            self.made += 1
            self.changed.notify_all()
        time.sleep(0.002)
        with self.stream:  # ...then the device runs it
            self.ran += 1
            if self.ran < self.batches:
                with self.changed:
                    ready = self.changed.wait_for(lambda: self.made > self.ran, self.patience)
                self.ready_in_time.append(ready)
        return feed["x"] * 2


def run_on(device: FakeDevice, lanes: int) -> list[int]:
    async def scenario() -> list[int]:
        pool = Lanes("g", lanes, 1)
        metrics = BatcherMetrics(ServiceMetrics(), "g")
        admission = Admission("g", QueuePolicy(1000, 0.0), pool, metrics)
        batcher = Batcher("g", device.run_batch, pool, admission, metrics)
        batcher.start()
        pool.start()
        try:
            rows = {"x": np.arange(device.batches, dtype=np.int64)}
            out = await batcher.submit(rows, time.monotonic() + 60, CancelToken())
            return [int(v) for v in out]
        finally:
            pool.stop()

    return asyncio.run(scenario())


def test_on_cuda_the_next_batch_is_made_while_the_device_runs_one() -> None:
    plan = plan_parallelism(Settings(), CUDA, SIXTEEN)
    device = FakeDevice(batches=6)
    assert run_on(device, plan.lanes) == [0, 2, 4, 6, 8, 10]
    assert device.ready_in_time == [True] * 5
    assert not plan.encode_on_lane  # the encode pool encodes: the lanes go back to the device


def test_one_lane_leaves_the_device_waiting() -> None:
    """The fake device tells the two plans apart: with one lane nothing is made meanwhile."""
    device = FakeDevice(batches=2, patience=0.2)
    assert run_on(device, 1) == [0, 2]
    assert device.ready_in_time == [False]


def test_encoders_on_a_gpu_host_take_the_cores_the_lanes_leave() -> None:
    assert plan_encode_threads(Settings(), CUDA, SIXTEEN) == 14  # the event loop and the lanes keep 2
    assert plan_encode_threads(Settings(), CUDA, [0, 1]) == 2
    assert plan_encode_threads(Settings(), CPU, SIXTEEN) == 2  # on CPU the lanes encode on their cores
    assert plan_encode_threads(Settings(encode_threads=5), CUDA, SIXTEEN) == 5
