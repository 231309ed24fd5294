"""The engine behind the HTTP layer: served models, their batchers, and the inference lifecycle
(decode -> batch -> predict -> unbatch -> encode). No FastAPI imports; no per-request state on
shared objects: everything a request needs travels in its own arguments and return value."""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_export.latents import (
    INTERPOLATIONS,
    MAX_SEED,
    MIN_TRUNCATION,
    interpolate_latent,
    latent_from_seed,
)
from model_export.repository import NAME_PATTERN
from model_export.tiling import RowBlender, extract_tiles, plan_tiles
from service.batching import Batcher, CancelToken, Lanes, Preparing
from service.config import Settings
from service.encoding import encode_image
from service.errors import InvalidRequest, NotReady, UnknownModel
from service.imaging import compose, decode_image, upscale_alpha
from service.metrics import BatcherMetrics, ServiceMetrics
from service.models import LoadedModel, load_models

log = logging.getLogger("gan.engine")


@dataclass
class GenerateSpec:
    """A /generate request, already parsed; defaults are filled in by the engine from the manifest."""

    model: str | None = None
    n: int | None = None
    seed: int | None = None
    seeds: list[int] | None = None
    labels: list[int | str] | int | str | None = None
    truncation: float | None = None
    fmt: str = "png"


@dataclass
class WalkSpec:
    """A /walk request, already parsed: `steps` images along the latent path between two seeds."""

    from_seed: int
    to_seed: int
    steps: int
    model: str | None = None
    label: int | str | None = None
    truncation: float | None = None
    method: str = "slerp"
    fmt: str = "png"


@dataclass
class GeneratedImage:
    seed: int
    label: int | None
    label_name: str | None
    data: bytes


@dataclass
class GeneratorOutput:
    """What every generator answer says about its images."""

    model: str
    version: int
    fmt: str
    height: int
    width: int
    channels: int


@dataclass
class WalkResult(GeneratorOutput):
    from_seed: int
    to_seed: int
    method: str
    label: int | None
    label_name: str | None
    positions: list[float]  # t of each image, 0 (from_seed) to 1 (to_seed)
    images: list[bytes]


@dataclass
class UpscaleResult:
    model: str
    version: int
    fmt: str
    input_size: tuple[int, int]  # (width, height)
    output_size: tuple[int, int]
    data: bytes


@dataclass
class GenerateResult(GeneratorOutput):
    images: list[GeneratedImage]


class Engine:
    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.models: dict[str, LoadedModel] = {}
        self.failures: dict[str, str] = {}
        self.batchers: dict[str, Batcher] = {}  # generators
        self.tile_batchers: dict[tuple[str, int, int], Batcher] = {}  # upscalers, per tile shape
        self._lanes: dict[str, Lanes] = {}
        self._preparing: dict[str, Preparing] = {}
        self._batch_functions: dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]] = {}
        self._served: dict[str, list[str]] = {}  # task -> model names
        self._generated: dict[str, Any] = {}  # model -> its images-generated counter
        self.started = False
        self.draining = False
        self.encode_pool = ThreadPoolExecutor(settings.encode_threads, thread_name_prefix="encode")

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.models, self.failures = await loop.run_in_executor(None, load_models, self.settings)
        # The served models do not change once started: their names per task, for every request.
        for task in ("generate", "upscale"):
            self._served[task] = sorted(n for n, m in self.models.items() if m.task == task)
        for name, reason in self.failures.items():
            self.metrics.model_failures.labels(name).set(1)
            log.error("not serving %s: %s", name, reason)
        for name, model in self.models.items():
            # What a batch of queued rows runs: an upscaler's rows are its inputs, a generator's
            # are seeds and labels.
            self._batch_functions[name] = _generator_rows(model) if model.task == "generate" else model.run
            # One inference thread (lane) per batch the model may run at once.
            self._preparing[name] = Preparing()
            plan = model.parallelism
            self._lanes[name] = Lanes(
                name, plan.lanes, self._preparing[name], self.settings.inference_nice, plan.pinned_cores
            )
            self._lanes[name].start()
            if model.task == "generate":
                batcher = self._new_batcher(
                    model, name, self.settings.max_batch_size, self.settings.max_queue_units
                )
                self.batchers[name] = batcher
            else:
                tile = int(model.manifest["upscaler"]["tile"])
                batcher = self._tile_batcher(model, tile, tile)
            if self.settings.warmup:
                started = time.perf_counter()
                # The largest batch's time seeds the batcher's estimate (Retry-After, deadlines).
                batcher.batch_seconds = await loop.run_in_executor(None, self._warm_up, model)
                log.info("warmed up %s in %.2f s", name, time.perf_counter() - started)
            self.metrics.model_info.labels(name, str(model.version), model.task, model.provider).set(1)
        self.started = True

    def _new_batcher(self, model: LoadedModel, label: str, max_units: int, max_queue: int) -> Batcher:
        batcher = Batcher(
            label,
            self._batch_functions[model.name],
            self._lanes[model.name],
            max_units,
            self.settings.max_batch_delay_ms / 1000,
            max_queue,
            BatcherMetrics(self.metrics, model.name),
            None if model.parallelism.finish_on_lane else self.encode_pool,
        )
        batcher.start()
        return batcher

    def _tile_batcher(self, model: LoadedModel, height: int, width: int) -> Batcher:
        """The queue for one tile shape of an upscaler (the full tile, or a small image's own size)."""
        key = (model.name, height, width)
        if key not in self.tile_batchers:
            label = f"{model.name}@{height}x{width}"
            self.tile_batchers[key] = self._new_batcher(
                model, label, self.settings.max_batch_tiles, self.settings.max_queue_tiles
            )
        return self.tile_batchers[key]

    def _warm_up(self, model: LoadedModel) -> float:
        """Run every batch size the batcher can form, so no request pays for a first run (memory
        arena growth, kernel selection) at a new shape, then the largest on every lane at once
        (the arena grows for concurrent runs too). Returns the largest batch's seconds."""
        if model.task == "upscale":
            section = model.manifest["upscaler"]
            tile = np.zeros((1, section["tile"], section["tile"], section["channels"]), np.uint8)
            sizes = range(1, self.settings.max_batch_tiles + 1)
            feeds = [{"image": np.repeat(tile, n, axis=0)} for n in sizes]
        else:
            feeds = [
                {
                    "seed": np.arange(n, dtype=np.int64),
                    "truncation": np.full(n, np.nan),
                    "labels": np.zeros(n, dtype=np.int64),
                    "to_seed": np.full(n, -1, dtype=np.int64),
                    "t": np.zeros(n),
                    "lerp": np.zeros(n, dtype=np.bool_),
                }
                for n in range(1, self.settings.max_batch_size + 1)
            ]
        run = self._batch_functions[model.name]
        elapsed = 0.0
        for feed in feeds:
            started = time.perf_counter()
            run(feed)
            elapsed = time.perf_counter() - started
        if model.parallelism.lanes > 1:
            with ThreadPoolExecutor(model.parallelism.lanes) as pool:
                list(pool.map(run, [feeds[-1]] * model.parallelism.lanes))
        return elapsed

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for lanes in self._lanes.values():  # running batches end and answer first
            await loop.run_in_executor(None, lanes.stop)
        for batcher in [*self.batchers.values(), *self.tile_batchers.values()]:
            await batcher.stop()
        self.encode_pool.shutdown(wait=True)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        ready = self.started and not self.draining and not self.failures and bool(self.models)
        if self.draining:
            state = "draining"
        elif not self.started:
            state = "starting"
        else:
            state = "ready" if ready else "degraded"
        return ready, {
            "status": state,
            "models": {
                name: {"version": m.version, "provider": m.provider} for name, m in self.models.items()
            },
            "failed": self.failures,
        }

    # --- models -------------------------------------------------------------------------------

    def model_infos(self) -> list[dict[str, Any]]:
        return [self.models[name].info() for name in sorted(self.models)]

    def limits(self) -> dict[str, int]:
        """The request limits a client must stay within (n and steps, upload size)."""
        return {
            "max_n": self.settings.max_n,
            "max_walk_steps": self.settings.max_n,
            "max_input_pixels": self.settings.max_input_pixels,
            "max_body_bytes": self.settings.max_body_bytes,
        }

    def resolve(self, name: str | None, task: str) -> LoadedModel:
        if not self.started:
            raise NotReady("the service is starting")
        served = self._served.get(task, [])
        if name is None:
            if not served:
                raise UnknownModel(f"no {task} model is served")
            return self.models[served[0]]
        if not NAME_PATTERN.match(name) or ".." in name:  # never echo, or look up, an arbitrary string
            raise InvalidRequest(
                "a model name is 1-64 characters: lowercase letters, digits, '.', '_', '-', starting with "
                f"a letter or digit; {task} models served: {', '.join(served) or 'none'}"
            )
        model = self.models.get(name)
        if model is None:
            raise UnknownModel(f"unknown model {name!r}; {task} models served: {', '.join(served) or 'none'}")
        if model.task != task:
            others = ", ".join(served) or "none"
            raise InvalidRequest(f"model {name!r} is an {model.task} model; {task} models served: {others}")
        return model

    # --- generate -----------------------------------------------------------------------------

    async def generate(self, spec: GenerateSpec, deadline: float, cancel: CancelToken) -> GenerateResult:
        model = self.resolve(spec.model, "generate")
        section = model.manifest["generator"]
        batcher = self.batchers[model.name]
        # decode: seeds and labels (the latents are drawn on the inference thread, per batch)
        seeds = self._seeds(spec)
        labels = self._labels(spec.labels, section["classes"], seeds)
        truncation = _truncation(spec.truncation)
        batcher.check_room(len(seeds))  # refused before anything is built for it (checked again on submit)
        count = len(seeds)
        rows = {
            "seed": np.array(seeds, dtype=np.int64),
            "truncation": np.full(count, truncation),
            "labels": np.array([-1 if label is None else label for label in labels], dtype=np.int64),
            "to_seed": np.full(count, -1, dtype=np.int64),
            "t": np.zeros(count),
            "lerp": np.zeros(count, dtype=np.bool_),
        }
        # batch + predict + unbatch + encode: one file per seed, encoded on the lane or the encode pool
        fmt = spec.fmt
        blobs: list[bytes] = await batcher.submit(
            rows, deadline, cancel, lambda pixels: _encode_all(pixels, fmt)
        )
        self._count_generated(model, len(blobs))
        names = section["classes"]["names"]
        out = section["output"]
        return GenerateResult(
            model=model.name,
            version=model.version,
            fmt=spec.fmt,
            height=out["height"],
            width=out["width"],
            channels=out["channels"],
            images=[
                GeneratedImage(seed, label, names[label] if label is not None else None, blob)
                for seed, label, blob in zip(seeds, labels, blobs, strict=True)
            ],
        )

    async def walk(self, spec: WalkSpec, deadline: float, cancel: CancelToken) -> WalkResult:
        """`steps` images at evenly spaced points of the latent path from one seed's latent to
        another's, with one label for all: the first and last are the seeds' own /generate images."""
        model = self.resolve(spec.model, "generate")
        section = model.manifest["generator"]
        batcher = self.batchers[model.name]
        # decode: the two seeds, the label, the positions along the path
        if not 2 <= spec.steps <= self.settings.max_n:
            raise InvalidRequest(
                f"steps must be between 2 and {self.settings.max_n} (this server's limit), got {spec.steps}"
            )
        for seed in (spec.from_seed, spec.to_seed):
            if not 0 <= seed <= MAX_SEED:
                raise InvalidRequest(f"seeds must be between 0 and {MAX_SEED}")
        if spec.method not in INTERPOLATIONS:
            raise InvalidRequest(f"method must be one of {', '.join(INTERPOLATIONS)}")
        label = self._labels(spec.label, section["classes"], [spec.from_seed])[0]
        truncation = _truncation(spec.truncation)
        batcher.check_room(spec.steps)
        positions = [i / (spec.steps - 1) for i in range(spec.steps)]
        rows = {
            "seed": np.full(spec.steps, spec.from_seed, dtype=np.int64),
            "truncation": np.full(spec.steps, truncation),
            "labels": np.full(spec.steps, -1 if label is None else label, dtype=np.int64),
            "to_seed": np.full(spec.steps, spec.to_seed, dtype=np.int64),
            "t": np.array(positions),
            "lerp": np.full(spec.steps, spec.method == "lerp"),
        }
        # batch + predict + unbatch + encode, as for /generate
        fmt = spec.fmt
        blobs: list[bytes] = await batcher.submit(
            rows, deadline, cancel, lambda pixels: _encode_all(pixels, fmt)
        )
        self._count_generated(model, len(blobs))
        out = section["output"]
        return WalkResult(
            model=model.name,
            version=model.version,
            fmt=fmt,
            height=out["height"],
            width=out["width"],
            channels=out["channels"],
            from_seed=spec.from_seed,
            to_seed=spec.to_seed,
            method=spec.method,
            label=label,
            label_name=section["classes"]["names"][label] if label is not None else None,
            positions=positions,
            images=blobs,
        )

    def _count_generated(self, model: LoadedModel, count: int) -> None:
        counter = self._generated.get(model.name)
        if counter is None:
            counter = self._generated[model.name] = self.metrics.images_generated.labels(
                model.name, str(model.version)
            )
        counter.inc(count)

    # --- upscale ------------------------------------------------------------------------------

    async def upscale(
        self, data: bytes, model_name: str | None, fmt: str | None, deadline: float, cancel: CancelToken
    ) -> UpscaleResult:
        model = self.resolve(model_name, "upscale")
        section = model.manifest["upscaler"]
        scale, channels = int(section["scale"]), int(section["channels"])
        loop = asyncio.get_running_loop()
        # decode, then cut into tiles; every tile row is one job, queued at once
        with self._preparing[model.name]():
            image = await loop.run_in_executor(
                self.encode_pool, decode_image, data, self.settings.max_input_pixels
            )
            pixels = image.rgb if channels == 3 else image.rgb[:, :, :1]
            h, w = pixels.shape[:2]
            plan = plan_tiles(h, w, int(section["tile"]), int(section["overlap"]))
            batcher = self._tile_batcher(model, plan.tile_h, plan.tile_w)
            batcher.check_room(len(plan.origins))
            rows = [
                asyncio.ensure_future(
                    batcher.submit({"image": extract_tiles(pixels, plan, r)}, deadline, cancel)
                )
                for r in range(len(plan.ys))
            ]
        # predict, row by row as they finish; unbatch into the output (memory: one band of rows)
        blender = RowBlender(plan, scale, channels)
        try:
            for r, row in enumerate(rows):
                tiles = await row  # (len(plan.xs), th*s, tw*s, C) uint8
                await loop.run_in_executor(self.encode_pool, blender.add_row, r, tiles)
        except BaseException:
            cancel.cancel()  # the rest of this image is useless now
            for row in rows:
                row.cancel()
            await asyncio.gather(*rows, return_exceptions=True)
            raise
        # encode, with the alpha channel upscaled beside the RGB
        out_format = fmt or image.source_format
        blob = await loop.run_in_executor(
            self.encode_pool, _finish_upscale, blender, image, scale, out_format
        )
        self.metrics.pixels_upscaled.labels(model.name, str(model.version)).inc(h * w * scale * scale)
        return UpscaleResult(model.name, model.version, out_format, (w, h), (w * scale, h * scale), blob)

    def _seeds(self, spec: GenerateSpec) -> list[int]:
        max_n = self.settings.max_n
        if spec.seeds is not None:
            if spec.seed is not None:
                raise InvalidRequest("give either seed or seeds, not both")
            if spec.n is not None and spec.n != len(spec.seeds):
                raise InvalidRequest(f"n is {spec.n} but {len(spec.seeds)} seeds were given")
        count = len(spec.seeds) if spec.seeds is not None else 1 if spec.n is None else spec.n
        # Checked before any list is built: n comes from the client and may be huge.
        if not 1 <= count <= max_n:
            raise InvalidRequest(f"n must be between 1 and {max_n} (this server's limit), got {count}")
        if spec.seeds is not None:
            seeds = list(spec.seeds)
        elif spec.seed is None:
            start = secrets.randbelow(MAX_SEED - max_n)
            seeds = list(range(start, start + count))
        else:
            if spec.seed + count - 1 > MAX_SEED:
                raise InvalidRequest(f"seed + n - 1 must be at most {MAX_SEED}")
            seeds = list(range(spec.seed, spec.seed + count))
        if any(not 0 <= s <= MAX_SEED for s in seeds):
            raise InvalidRequest(f"seeds must be between 0 and {MAX_SEED}")
        return seeds

    @staticmethod
    def _labels(
        requested: list[int | str] | int | str | None, classes: dict[str, Any], seeds: list[int]
    ) -> list[int | None]:
        count, names = int(classes["count"]), classes["names"]
        if count == 0:
            if requested is not None:
                raise InvalidRequest("this model is unconditional: it takes no labels")
            return [None] * len(seeds)
        if requested is None:  # no label asked for: one per seed, reproducible from the seed
            return [seed % count for seed in seeds]
        wanted = requested if isinstance(requested, list) else [requested] * len(seeds)
        if len(wanted) != len(seeds):
            raise InvalidRequest(
                f"{len(wanted)} labels for {len(seeds)} images; give one label, or one per image"
            )
        out: list[int | None] = []
        for label in wanted:
            if isinstance(label, bool):
                raise InvalidRequest(f"label {label!r} is not a class; classes: {', '.join(names)}")
            if isinstance(label, int) and 0 <= label < count:
                out.append(label)
            elif isinstance(label, str) and label in names:
                out.append(names.index(label))
            else:
                raise InvalidRequest(
                    f"unknown label {label!r}; classes are 0-{count - 1} or their names: {', '.join(names)}"
                )
        return out


def _truncation(value: float | None) -> float:
    """A request's truncation as a row value: NaN for none."""
    if value is None:
        return math.nan
    if not MIN_TRUNCATION <= value <= 10.0:
        raise InvalidRequest(f"truncation must be between {MIN_TRUNCATION} and 10")
    return value


def _finish_upscale(blender: RowBlender, image: Any, scale: int, fmt: str) -> bytes:
    rgb = blender.result()
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    alpha = upscale_alpha(image.alpha, scale) if image.alpha is not None else None
    return encode_image(compose(rgb, alpha, image.gray), fmt)


def _generator_rows(model: LoadedModel) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """A generator's batch function on the inference thread: rows of (seed, truncation, label)
    -> latents -> the model -> pixels. Drawing the latents here keeps them off the event loop."""
    latent_size = int(model.manifest["generator"]["latent_size"])
    conditional = "labels" in model.input_names

    def run(rows: dict[str, np.ndarray]) -> np.ndarray:
        # seed (B,) int64; truncation (B,) float64, NaN for none; labels (B,) int64, -1 for none;
        # a walk's rows: to_seed (B,) int64, -1 for none; t (B,) float64; lerp (B,) bool
        z = np.empty((len(rows["seed"]), latent_size), dtype=np.float32)  # (B, latent)
        for i, (seed, truncation, to_seed, t, lerp) in enumerate(
            zip(
                rows["seed"].tolist(),
                rows["truncation"].tolist(),
                rows["to_seed"].tolist(),
                rows["t"].tolist(),
                rows["lerp"].tolist(),
                strict=True,
            )
        ):
            threshold = None if math.isnan(truncation) else truncation
            z[i] = latent_from_seed(seed, latent_size, threshold)
            if to_seed >= 0:
                end = latent_from_seed(to_seed, latent_size, threshold)
                z[i] = interpolate_latent(z[i], end, t, "lerp" if lerp else "slerp")
        feed = {"z": z, "labels": rows["labels"]} if conditional else {"z": z}
        return model.run(feed)  # (B, H, W, C) uint8

    return run


def _encode_all(pixels: np.ndarray, fmt: str) -> list[bytes]:
    return [encode_image(image, fmt) for image in pixels]
