"""Prometheus metrics, in a registry of the service's own (so two services in one process, as in
tests, never share counters). Names follow Prometheus conventions: base units, _total counters."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
FILL_BUCKETS = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # Called before each rendering: state read lazily elsewhere is brought up to date.
        self.before_render: list[Callable[[], object]] = []
        r = self.registry
        self.requests = Counter(
            "gan_requests", "HTTP requests answered", ["endpoint", "model", "version", "status"], registry=r
        )
        self.latency = Histogram(
            "gan_request_duration_seconds",
            "End-to-end request latency, from the first byte read to the response",
            ["endpoint", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("gan_requests_in_flight", "Requests being handled", ["endpoint"], registry=r)
        self.queue_wait = Histogram(
            "gan_queue_wait_seconds",
            "Time work waited in a model's queue",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "gan_inference_duration_seconds",
            "ONNX Runtime time per batch",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "gan_batch_size_units",
            "Work units (images, tiles) per batch",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_fill = Histogram(
            "gan_batch_fill_ratio",
            "Batch size over the maximum batch size",
            ["model"],
            buckets=FILL_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "gan_queue_depth_units", "Work units waiting per model", ["model"], registry=r
        )
        self.rejections = Counter(
            "gan_rejections", "Work refused or dropped, by reason", ["model", "reason"], registry=r
        )
        self.refused_at_door = Counter(
            "gan_refused_at_door",
            "429s answered by the HTTP protocol before the application, while the model was shedding "
            "(also counted in gan_requests_total)",
            ["endpoint"],
            registry=r,
        )
        self.shedding = Gauge(
            "gan_shedding",
            "Queues of the model refusing all new work until they are half empty (one per served version)",
            ["model"],
            registry=r,
        )
        self.images_generated = Counter(
            "gan_images_generated", "Images generated", ["model", "version"], registry=r
        )
        self.pixels_upscaled = Counter(
            "gan_pixels_upscaled", "Output pixels produced by upscaling", ["model", "version"], registry=r
        )
        self.model_info = Gauge(
            "gan_model_info", "Served models (value 1)", ["model", "version", "task", "provider"], registry=r
        )
        self.connections_open = Gauge("gan_connections_open", "Open client connections", registry=r)
        self.connections_closed = Counter(
            "gan_connections_closed",
            "Connections the server closed on a slow or stalled client, by the limit it was over",
            ["reason"],
            registry=r,
        )
        self.model_memory = Gauge(
            "gan_model_memory_bytes",
            "Resident memory the process grew by while loading and warming up each served model",
            ["model", "version"],
            registry=r,
        )
        self.model_failures = Gauge(
            "gan_model_load_failed",
            "Models with a version that failed to load and is not being served (value 1)",
            ["model"],
            registry=r,
        )
        self.model_loads = Counter(
            "gan_model_loads",
            "Model versions loaded, failed to load, and unloaded, while starting and while serving",
            ["model", "outcome"],
            registry=r,
        )
        self.default_version = Gauge(
            "gan_model_default_version",
            "The version that answers requests which pin none (the canary's share aside)",
            ["model"],
            registry=r,
        )

    def render(self) -> bytes:
        for refresh in self.before_render:
            refresh()
        return generate_latest(self.registry)


class QueueDepth:
    """One batcher's part of its model's queue-depth gauge: the versions of a model served side
    by side each have a batcher, and the gauge is their sum."""

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge
        self._units = 0

    def set(self, units: int) -> None:
        """Called with the batcher's lock held."""
        self._gauge.inc(units - self._units)
        self._units = units


class BatcherMetrics:
    """One model's view of the service metrics, handed to its batcher."""

    def __init__(self, metrics: ServiceMetrics, model: str) -> None:
        self.queue_wait = metrics.queue_wait.labels(model)
        self.inference = metrics.inference.labels(model)
        self.batch_size = metrics.batch_size.labels(model)
        self.batch_fill = metrics.batch_fill.labels(model)
        self.queue_depth = QueueDepth(metrics.queue_depth.labels(model))
        self.shedding = metrics.shedding.labels(model)
        self._rejections = metrics.rejections
        self._model = model
        self._rejected: dict[str, Counter] = {}  # labels() costs more than inc(): once per reason

    def rejected(self, reason: str, count: int = 1) -> None:
        counter = self._rejected.get(reason)
        if counter is None:
            counter = self._rejected[reason] = self._rejections.labels(self._model, reason)
        counter.inc(count)
