"""A served image generator: /generate and /walk.

A request becomes rows of (seed, truncation, label, walk target): one row per image. The latents
are drawn from the seeds on the inference lane, per batch, so the event loop never does it, and
a walk's frames batch with other requests' images.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from contract.endpoints import GENERATE, GENERATOR, WALK, ContractError, random_start
from contract.errors import InvalidRequest
from contract.provenance import RecordHead
from model_repository.latents import interpolate_latent, latent_from_seed
from service.config import Settings
from service.images.animation import encode_animation, frame_duration
from service.images.encoding import encode_image
from service.images.stamping import encode_recorded
from service.schemas.answers import Generated, GeneratedImage, StyleGenerated, Walk, WalkAnimation, WalkImage
from service.schemas.requests import GenerateRequest, Label, WalkRequest
from service.served.batcher import CancelToken
from service.served.model import ServedModel, holds_model
from service.served.providers import CPU

# The fields of /generate and /walk a plain generator refuses (the contract's, found once).
STYLE_ONLY = {e.path: tuple(f.name for f in e.fields if GENERATOR not in f.kinds) for e in (GENERATE, WALK)}


class Generator(ServedModel):
    manifest_task = "generate"
    kind_name = "generate"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        section = self.manifest["generator"]
        self.latent_size = int(section["latent_size"])
        self.class_count = int(section["classes"]["count"])
        self.class_names: list[str] = section["classes"]["names"]
        self.output = section["output"]  # height, width, channels
        self.conditional = "labels" in self.runtime.input_names
        self._images_generated = self.metrics.images_generated.labels(self.name, str(self.version))

    @staticmethod
    def batch_limits(settings: Settings, provider: str) -> tuple[int, int]:
        # 0: 32 images on CPU (the default before GPUs were planned for); 256 on CUDA, whose width
        # wants large batches (bench/gpu_bench.py measures where a model's throughput levels off).
        return settings.max_batch_size or (32 if provider == CPU else 256), settings.max_queue_units

    def accepts(self) -> dict[str, Any]:
        return {
            "endpoints": ["/generate", "/walk"],
            "generate": GENERATE.accepts(GENERATOR),
            "walk": WALK.accepts(GENERATOR),
        }

    def _refuse_style_fields(self, request: GenerateRequest | WalkRequest) -> None:
        """A style model's parameters, asked of a model that has none: a 400 naming the first."""
        for name in STYLE_ONLY[GENERATE.path if isinstance(request, GenerateRequest) else WALK.path]:
            if getattr(request, name) not in (None, False):
                raise InvalidRequest(
                    f"model {self.name!r} is not style-based and does not take {name} "
                    "(truncation, on z, is its truncation trick)"
                )

    # --- the one place a generator's batch inputs are built -----------------------------------------

    @staticmethod
    def batch_inputs(
        seeds: np.ndarray,
        labels: np.ndarray,
        truncation: float | None,
        to_seeds: np.ndarray | None = None,
        positions: np.ndarray | None = None,
        lerp: bool = False,
    ) -> dict[str, np.ndarray]:
        """The batch inputs of B images, one row each, by column: seed (B,) int64; truncation (B,)
        float64, NaN for none; labels (B,) int64, -1 for none; a walk's: to_seed (B,) int64 (-1: not
        a walk), t (B,) float64, lerp (B,) bool. Every request's inputs have the same columns, so
        any requests can share a batch."""
        count = len(seeds)
        return {
            "seed": seeds,
            "truncation": np.full(count, math.nan if truncation is None else truncation),
            "labels": labels,
            "to_seed": np.full(count, -1, dtype=np.int64) if to_seeds is None else to_seeds,
            "t": np.zeros(count) if positions is None else positions,
            "lerp": np.full(count, True) if lerp else np.zeros(count, dtype=np.bool_),
        }

    def run_batch(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """On a lane: inputs -> latents (B, latent_size) float32 -> the model -> (B, H, W, C) uint8."""
        z = np.empty((len(inputs["seed"]), self.latent_size), dtype=np.float32)
        columns = [inputs[name].tolist() for name in ("seed", "truncation", "to_seed", "t", "lerp")]
        for i, (seed, truncation, to_seed, t, lerp) in enumerate(zip(*columns, strict=True)):
            threshold = None if math.isnan(truncation) else truncation
            z[i] = latent_from_seed(seed, self.latent_size, threshold)
            if to_seed >= 0:
                end = latent_from_seed(to_seed, self.latent_size, threshold)
                z[i] = interpolate_latent(z[i], end, t, "lerp" if lerp else "slerp")
        feed = {"z": z, "labels": inputs["labels"]} if self.conditional else {"z": z}
        return self.runtime.run(feed)

    def warm_up_inputs(self, units: int) -> dict[str, np.ndarray]:
        return self.batch_inputs(np.arange(units, dtype=np.int64), np.zeros(units, dtype=np.int64), None)

    # --- requests ---------------------------------------------------------------------------------

    @holds_model
    async def generate(
        self, request: GenerateRequest, fmt: str, deadline: float, cancel: CancelToken
    ) -> Generated | StyleGenerated:
        """n images (one per seed), encoded as `fmt`."""
        self._refuse_style_fields(request)
        # decode: seeds and labels (the latents are drawn on the lane, per batch)
        seeds = self._seeds(request)
        labels = self._labels(request.labels, seeds)
        self.admission.check_room(len(seeds))  # refused before anything is built for it
        inputs = self.batch_inputs(np.array(seeds, dtype=np.int64), int_column(labels), request.truncation)
        # batch + predict + unbatch + encode: one file per image, each with its provenance record
        names = self.class_names
        head = self.record_head("/generate", fmt, source="seed", truncation=request.truncation)
        encode = _encoder(
            fmt,
            head,
            [
                {"seed": s, "label": k, "label_name": class_name(names, k)}
                for s, k in zip(seeds, labels, strict=True)
            ],
        )
        blobs: list[bytes] = await self.batcher.submit(inputs, deadline, cancel, encode)
        self._images_generated.inc(len(blobs))
        return Generated(
            **self.answer_head(fmt),
            images=[
                GeneratedImage(seed, label, None if label is None else names[label], blob)
                for seed, label, blob in zip(seeds, labels, blobs, strict=True)
            ],
        )

    @holds_model
    async def walk(self, request: WalkRequest, deadline: float, cancel: CancelToken) -> Walk | WalkAnimation:
        """`steps` images at evenly spaced points of the latent path from one seed's latent to
        another's (or around a loop of seeds), with one label for all: each seed's frame has the
        pixels of its own /generate image (the files differ in their provenance records)."""
        self._refuse_style_fields(request)
        frames = self._walk_frames(request)
        label = self._labels(request.label, request.waypoints[:1])[0]
        self.admission.check_room(frames.count)
        inputs = self.batch_inputs(
            frames.start,
            int_column([label] * frames.count),
            request.truncation,
            to_seeds=frames.end,
            positions=frames.t,
            lerp=request.method == "lerp",
        )
        sampling = {"truncation": request.truncation}
        return await self._walk_answer(
            request, inputs, frames, request.method or "slerp", label, sampling, deadline, cancel
        )

    # --- walks, for every kind of generator -----------------------------------------------------

    def _walk_frames(self, request: WalkRequest) -> WalkFrames:
        """The walk's frames, once their count is known to be within this server's limit."""
        count = request.count
        if request.seeds is None:
            self.check_count(count, "steps", 2)
        elif count > self.settings.max_n:
            raise InvalidRequest(
                f"a loop through {len(request.seeds)} seeds with {request.steps} steps each makes {count} "
                f"frames; this server's limit is {self.settings.max_n} (max_n)"
            )
        return walk_frames(request)

    @staticmethod
    def pixels_of(output: np.ndarray) -> np.ndarray:
        """A job's output rows -> their pixels (B, H, W, C) uint8."""
        return output

    async def _walk_answer(
        self,
        request: WalkRequest,
        inputs: dict[str, np.ndarray],
        frames: WalkFrames,
        method: str,
        label: int | None,
        sampling: dict[str, Any],
        deadline: float,
        cancel: CancelToken,
    ) -> Walk | WalkAnimation:
        """Run a walk's inputs; the frames as JSON (one file each) or as one animated file. `sampling`:
        the walk's truncation (z) or truncation_psi and noise (style), for its records."""
        pixels_of = self.pixels_of
        walk: dict[str, Any] = (
            {"seeds": request.seeds}
            if request.seeds is not None
            else {"from_seed": request.from_seed, "to_seed": request.to_seed}
        )
        walk |= {"steps": request.steps, "method": method, "label": label}
        walk |= {"label_name": class_name(self.class_names, label), **sampling}
        if request.animation is not None:
            # no file per frame: the raw output rows, encoded once into the animation, off the event loop
            output = await self.batcher.submit(inputs, deadline, cancel)
            frame_ms = frame_duration(request.animation, request.frame_ms)
            record = RecordHead.of("/walk", self.name, self.version, source="seed", **walk).record(
                animation=request.animation, frame_ms=frame_ms
            )
            data = await asyncio.get_running_loop().run_in_executor(
                self.encode_pool, encode_animation, pixels_of(output), request.animation, frame_ms, record
            )
            self._images_generated.inc(frames.count)
            return WalkAnimation(
                self.name,
                self.version,
                request.animation,
                frames.count,
                frame_ms,
                request.waypoints,
                label,
                data,
            )
        fmt = request.format
        frames_head = self.record_head("/walk", fmt, source="seed", **walk)
        frame_fields = [
            {"frame": {"index": i, "segment": segment, "t": t}}
            for i, (segment, t) in enumerate(zip(frames.segment.tolist(), frames.t.tolist(), strict=True))
        ]
        encode = _encoder(fmt, frames_head, frame_fields)
        blobs: list[bytes] = await self.batcher.submit(
            inputs, deadline, cancel, lambda output: encode(pixels_of(output))
        )
        self._images_generated.inc(len(blobs))
        seeds = request.waypoints
        return Walk(
            **self.answer_head(request.format),
            from_seed=seeds[0],
            to_seed=seeds[1] if request.seeds is None else seeds[0],
            seeds=seeds,
            method=method,
            label=label,
            label_name=None if label is None else self.class_names[label],
            images=[
                WalkImage(segment, t, blob)
                for segment, t, blob in zip(frames.segment.tolist(), frames.t.tolist(), blobs, strict=True)
            ],
        )

    def check_count(self, count: int, what: str = "n", least: int = 1) -> None:
        """Checked before any list is built: n comes from the client and may be huge."""
        if count > self.settings.max_n:
            raise InvalidRequest(
                f"{what} must be between {least} and {self.settings.max_n} (this server's limit), got {count}"
            )

    def record_head(self, endpoint: str, fmt: str, **fields: Any) -> RecordHead | None:
        """The provenance record's fields shared by a request's images of `fmt` (contract.provenance);
        None for npy, whose files have no room for one."""
        if fmt == "npy":
            return None
        return RecordHead.of(endpoint, self.name, self.version, format=fmt, **fields)

    def answer_head(self, fmt: str) -> dict[str, Any]:
        """What every answer of this model says about its images."""
        out = self.output
        return {
            "model": self.name,
            "version": self.version,
            "format": fmt,
            "height": out["height"],
            "width": out["width"],
            "channels": out["channels"],
        }

    def _seeds(self, request: GenerateRequest) -> list[int]:
        max_n = self.settings.max_n
        count = request.count
        self.check_count(count)
        if request.seeds is not None:
            return list(request.seeds)
        start = random_start(max_n) if request.seed is None else request.seed
        return list(range(start, start + count))

    def _labels(self, requested: list[Label] | Label | None, seeds: list[int]) -> list[int | None]:
        """One class index per image (None for an unconditional model)."""
        count, names = self.class_count, self.class_names
        if count == 0:
            if requested is not None:
                raise InvalidRequest("this model is unconditional: it takes no labels")
            return [None] * len(seeds)
        if requested is None:  # no label asked for: one per seed, reproducible from the seed
            return [seed % count for seed in seeds]
        try:
            GENERATE.check_per_image({"labels": requested}, len(seeds))
        except ContractError as e:
            raise InvalidRequest(str(e)) from None
        wanted = requested if isinstance(requested, list) else [requested] * len(seeds)
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


@dataclass(frozen=True)
class WalkFrames:
    """A walk's frames: each one's segment's two seeds, its position between them, the segment."""

    start: np.ndarray  # (F,) int64: the segment's first seed
    end: np.ndarray  # (F,) int64: the seed it walks to
    t: np.ndarray  # (F,) float64: 0 is start's latent, 1 is end's
    segment: np.ndarray  # (F,) int64

    @property
    def count(self) -> int:
        return len(self.t)


def walk_frames(request: WalkRequest) -> WalkFrames:
    """from_seed to to_seed: `steps` frames, both ends included. A loop through seeds [a, b, c]:
    segments a->b, b->c, c->a of `steps` frames each, every segment without its end (the next
    segment's first frame; the last segment's is the loop's first), so it repeats seamlessly."""
    steps, seeds = request.steps, np.array(request.waypoints, dtype=np.int64)
    if request.seeds is None:
        return WalkFrames(
            np.full(steps, seeds[0]),
            np.full(steps, seeds[1]),
            np.arange(steps) / (steps - 1),
            np.zeros(steps, np.int64),
        )
    return WalkFrames(
        np.repeat(seeds, steps),
        np.repeat(np.roll(seeds, -1), steps),
        np.tile(np.arange(steps) / steps, len(seeds)),
        np.repeat(np.arange(len(seeds), dtype=np.int64), steps),
    )


def int_column(values: list[int | None]) -> np.ndarray:
    """Seeds, labels or noise seeds -> an input column (B,) int64, -1 for None."""
    return np.array([-1 if v is None else v for v in values], dtype=np.int64)


def class_name(names: list[str], label: int | None) -> str | None:
    """A class index's name (None for none)."""
    return None if label is None else names[label]


def _encoder(
    fmt: str, head: RecordHead | None, fields: list[dict[str, Any]]
) -> Callable[[np.ndarray], list[bytes]]:
    """The encode step of a generator's job: (B, H, W, C) uint8 -> one file per image, image i
    carrying the record `head` completed with fields[i] (made here, on the encode pool)."""

    def encode(pixels: np.ndarray) -> list[bytes]:
        if head is None:
            return [encode_image(image, fmt) for image in pixels]
        return [
            encode_recorded(image, fmt, head.record(**own)) for image, own in zip(pixels, fields, strict=True)
        ]

    return encode
