"""A served model: one version of one model from the repository, with everything it needs to answer
requests on its own.

It owns its ONNX Runtime session (`Runtime`), its inference lanes, its queue (`Batcher`) and what
the queue admits (`Admission`), its decode gate, its warm-up and the one function that builds its
batch rows. Its life, step by step so that one model can be replaced while the others serve:
created (service.lifecycle.loading.load_model), started, warmed up, put in service, retired.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, ClassVar, ParamSpec, TypeVar

import numpy as np

from service.config import Settings
from service.metrics import BatcherMetrics, ServiceMetrics
from service.served.admission import Admission, QueuePolicy, Shedding
from service.served.batcher import Batcher
from service.served.lanes import DecodeGate, Lanes
from service.served.runtime import Runtime

log = logging.getLogger("gan.models")

P = ParamSpec("P")
R = TypeVar("R")


def holds_model(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Marks a served model's method that answers a request: while it runs, the request holds the
    model (`ServedModel.in_use`), and retiring the model waits for the requests holding it."""

    @functools.wraps(method)
    async def counted(*args: P.args, **kwargs: P.kwargs) -> R:
        model = args[0]
        assert isinstance(model, ServedModel)
        with model.in_use():
            return await method(*args, **kwargs)

    return counted


class ServedModel(ABC):
    # The manifest's task this class serves ("generate", "upscale"): how service.lifecycle.loading
    # picks the class, and the gan_model_info metric's task label.
    manifest_task: ClassVar[str]
    # The served kind, finer than the task (a style-based generator's task is "generate", its kind
    # "style"): GET /v1/models's "kind", and what error messages call this kind of model.
    kind_name: ClassVar[str]
    work_unit: ClassVar[str] = "image"  # what one row of a batch is, in messages
    memory_pattern: ClassVar[bool] = True  # ONNX Runtime's memory pattern (service.served.runtime)
    graphs: ClassVar[dict[str, str]] = {}  # the version's graphs besides model.onnx, by name

    def __init__(
        self,
        name: str,
        version: int,
        manifest: dict[str, Any],
        runtime: Runtime,
        settings: Settings,
        metrics: ServiceMetrics,
        encode_pool: Executor,
        shedding: Shedding,
    ) -> None:
        self.name = name
        self.version = version
        self.manifest = manifest
        self.runtime = runtime
        self.settings = settings
        self.metrics = metrics
        self.encode_pool = encode_pool
        self.gate = DecodeGate(settings.max_batch_delay_ms / 1000)
        plan = runtime.parallelism
        max_units, max_queue = self.batch_limits(settings, runtime.provider)
        self.lanes = Lanes(
            name,
            plan.lanes,
            max_units,
            self.gate,
            settings.inference_nice,
            plan.pinned_cores,
            encode_pool,
            plan.encode_on_lane,
        )
        self.buckets = runtime.use_buckets(max_units, settings.batch_buckets)
        queue_metrics = BatcherMetrics(metrics, name)
        policy = QueuePolicy.from_settings(settings, max_queue)
        self.admission = Admission(name, policy, self.lanes, queue_metrics, shedding, self.work_unit)
        self.batcher = Batcher(name, self.run_batch, self.lanes, self.admission, queue_metrics)
        self.memory_bytes = 0  # resident memory the process grew by while loading and warming it
        self.warm_up_seconds = 0.0
        self.holding_requests = 0  # requests holding this model now (on the event loop)

    # --- what each kind of model says for itself ----------------------------------------------

    @staticmethod
    @abstractmethod
    def batch_limits(settings: Settings, provider: str) -> tuple[int, int]:
        """(work units per batch, work units queued before 429) for this kind of model."""

    @abstractmethod
    def run_batch(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """On a lane: one batch's inputs (input name -> (B, ...), one row per image) -> its output,
        one row per image ((B, H, W, C) uint8 pixels, or a structured array holding them)."""

    @abstractmethod
    def warm_up_inputs(self, units: int) -> dict[str, np.ndarray]:
        """The inputs of a batch of `units` rows of the shape requests make, for the warm-up."""

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """On the event loop: the lanes start taking batches; the queue answers on this loop."""
        self.lanes.start()
        self.batcher.start()

    def warm_up(self) -> None:
        """Blocking (off the event loop): run every batch bucket (service.served.buckets: every size the
        batcher can form on CPU, the padded sizes on CUDA), so no request pays for a first run at a
        new shape, then the largest on every lane at once (concurrent runs need memory, and IO
        binding's buffers, of their own). The largest batch's time seeds the queue's
        estimate (Retry-After, deadlines that cannot be met)."""
        started = time.perf_counter()
        feeds = [self.warm_up_inputs(units) for units in self.buckets.sizes]
        elapsed = 0.0
        for feed in feeds:
            run_started = time.perf_counter()
            self.run_batch(feed)
            elapsed = time.perf_counter() - run_started
        lanes = self.runtime.parallelism.lanes
        if lanes > 1:
            with ThreadPoolExecutor(lanes) as pool:
                list(pool.map(self.run_batch, [feeds[-1]] * lanes))
        self.batcher.pace.seed(elapsed)
        self.warm_up_seconds = time.perf_counter() - started
        log.info("warmed up %s in %.2f s", self.name, self.warm_up_seconds)

    async def retire(self, timeout: float = 0.0) -> None:
        """Out of service (the registry no longer hands it to new requests): the requests it is
        answering finish on it, for up to `timeout` seconds; then its queue refuses new work,
        running batches end and answer, what is still queued is refused (503, retry), the lanes
        end, and the ONNX Runtime session (weights, arena) is released at once: a retired model
        must not wait for the garbage collector, which gc.freeze() keeps away from start-up
        objects."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.holding_requests and loop.time() < deadline:
            await asyncio.sleep(0.01)
        self.batcher.close()
        await loop.run_in_executor(None, self.lanes.stop)
        await self.batcher.stop()
        self.runtime.release()

    @contextlib.contextmanager
    def in_use(self) -> Iterator[None]:
        """Counts a request holding this model (retire waits for them): its own, through
        @holds_model, or another model's that runs on it too (an upscale blending two models)."""
        self.holding_requests += 1
        try:
            yield
        finally:
            self.holding_requests -= 1

    # --- what it says about itself ----------------------------------------------------------------

    @abstractmethod
    def accepts(self) -> dict[str, Any]:
        """The endpoints this model answers and the request fields each takes (GET /v1/models)."""

    def info(self) -> dict[str, Any]:
        return {
            "kind": self.kind_name,
            "accepts": self.accepts(),
            **self.runtime.info(),
            "memory_bytes": self.memory_bytes,
            "warm_up_seconds": round(self.warm_up_seconds, 3),
            **self.manifest,
        }
