"""A served super-resolution model: /upscale.

An upload is decoded, mirrored out to at least one tile (`pad_to_tile`), and cut into overlapping
tiles of the one shape the model runs: each row of tiles is one job, all queued at once while the
decode gate is still held, so the tiles of one image, and of other images, share batches. When the
request's path (service.lifecycle.upscale_path) blends in its family's detail model, every row goes to that
model's queue too, and the two outputs are mixed tile by tile. The upscaled rows are blended into
the output as they come back (memory: one band of rows), cropped to the image's own size, resized
to the size asked for, and encoded with the alpha channel resized beside the colour.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from contract.endpoints import UPSCALE, UPSCALER
from contract.errors import PayloadTooLarge
from model_repository.tiling import RowBlender, TilePlan, extract_tiles, pad_to_tile, plan_tiles
from service.config import Settings
from service.images.encoding import encode_image
from service.images.imaging import DecodedImage, OpenedImage, compose, decode
from service.images.metadata import metadata_for_output
from service.images.output_size import OutputSize, resize, resize_values
from service.schemas.answers import Upscaled
from service.schemas.requests import UpscaleOptions
from service.served.admission import HeldRoom
from service.served.batcher import CancelToken
from service.served.model import ServedModel, holds_model
from service.served.providers import CPU

Progress = Callable[[int, int], None]  # (tiles done, tiles in all)


class Upscaler(ServedModel):
    manifest_task = "upscale"
    kind_name = "upscale"
    work_unit = "tile"
    memory_pattern = False  # see service.served.runtime.make_session

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        section = self.manifest["upscaler"]
        self.scale = int(section["scale"])
        self.channels = int(section["channels"])
        self.tile = int(section["tile"])
        self.overlap = int(section["overlap"])
        family = section.get("family") or {}
        self.family_name: str | None = family.get("name")
        self.family_role: str | None = family.get("role")  # faithful | detail
        self._pixels_upscaled = self.metrics.pixels_upscaled.labels(self.name, str(self.version))

    @staticmethod
    def batch_limits(settings: Settings, provider: str) -> tuple[int, int]:
        # On CPU one tile a batch: measured, a batch of 4 x4 tiles ran no faster per tile (9.3
        # against 9.9 tiles/s on 2 cores) and needs 4 times the memory. A GPU wants batches, but
        # an x4 tile's intermediate tensors are large (64 channels at 512x512 in fp32: 64 MiB a
        # tile each), and two lanes run at once: 8 tiles a batch, until measured on the device.
        tiles = settings.max_batch_tiles or (1 if provider == CPU else 8)
        return tiles, settings.max_queue_tiles

    def accepts(self) -> dict[str, Any]:
        return {
            "endpoints": ["/upscale"],
            "upscale": UPSCALE.accepts(UPSCALER),
            "scale": self.scale,
        }

    def run_batch(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """On a lane: image (B, tile, tile, C) uint8 -> (B, tile*s, tile*s, C) uint8."""
        return self.runtime.run(inputs)

    def warm_up_inputs(self, units: int) -> dict[str, np.ndarray]:
        return {"image": np.zeros((units, self.tile, self.tile, self.channels), np.uint8)}

    def plan(self, width: int, height: int) -> TilePlan:
        """The tiles of an upright width x height image, from its header alone (so that a full
        queue refuses it before any pixel is decoded). Its size padded out to at least a tile
        counts against max_input_pixels too: the output is blended at that size (a 21x49,000
        strip would become 128x49,000)."""
        limit = self.settings.max_input_pixels
        padded_h, padded_w = max(height, self.tile), max(width, self.tile)
        if padded_h * padded_w > limit:
            raise PayloadTooLarge(
                f"the image is {width}x{height}; a side shorter than the model's tile ({self.tile}) is "
                f"padded to it, which makes {padded_w}x{padded_h} = {padded_w * padded_h} pixels; this "
                f"server takes at most {limit}"
            )
        return plan_tiles(padded_h, padded_w, self.tile, self.overlap)

    def pad(self, image: DecodedImage) -> np.ndarray:
        """The pixels this model runs, mirrored out to at least a tile: (H', W', channels) uint8."""
        pixels = image.rgb if self.channels == 3 else image.rgb[:, :, :1]
        return pad_to_tile(pixels, self.tile)

    def enqueue_rows(
        self, padded: np.ndarray, plan: TilePlan, deadline: float, cancel: CancelToken, held: HeldRoom
    ) -> list[asyncio.Future[Any]]:
        """Every tile row of the image as one job, queued now, in the room `held` for it (the
        caller holds the decode gate)."""
        rows: list[asyncio.Future[Any]] = []
        try:
            for r in range(len(plan.ys)):
                tiles = {"image": extract_tiles(padded, plan, r)}
                rows.append(self.batcher.enqueue(tiles, deadline, cancel, held=held))
        except BaseException:  # the deadline cannot be met, or the model stopped, midway
            for row in rows:  # the rows already queued are dropped before they run
                row.cancel()
            raise
        return rows

    @holds_model
    async def upscale(
        self,
        opened: OpenedImage,
        path: UpscalePath,
        options: UpscaleOptions,
        deadline: float,
        cancel: CancelToken,
        progress: Progress | None = None,
    ) -> Upscaled:
        """The image upscaled along `path` (this model first; its family's detail model blended in
        when the path says so), encoded as options.format (None: the input's format) with its
        metadata (options.strip). progress(tiles done, tiles) is called once every tile is
        queued, then as each row of tiles is blended in."""
        loop = asyncio.get_running_loop()
        models = path.models
        assert models[0] is self
        with contextlib.ExitStack() as using:
            for model in models[1:]:  # the blend's detail model answers this request too
                using.enter_context(model.in_use())
            # decode, then cut into tiles; every tile row of every model is one job, all queued
            # before the gates open (held longer, they would hold back every batch of the models)
            plan = self.plan(opened.width, opened.height)
            with contextlib.ExitStack() as gates:
                # Refused before the decoding, which costs more than the answer; once admitted, the
                # tiles' room is held for them, so uploads decoded meanwhile cannot take it.
                rooms = [gates.enter_context(m.admission.admit(len(plan.origins))) for m in models]
                for model in models:
                    gates.enter_context(model.gate.held())
                image = await loop.run_in_executor(self.encode_pool, decode, opened)
                padded = self.pad(image)
                h, w = image.rgb.shape[:2]
                jobs: list[list[asyncio.Future[Any]]] = []
                try:
                    for model, held in zip(models, rooms, strict=True):
                        jobs.append(model.enqueue_rows(padded, plan, deadline, cancel, held))
                except BaseException:
                    for rows in jobs:
                        for row in rows:
                            row.cancel()
                    raise
            blended = await self._blend_rows(plan, jobs, path.detail, cancel, progress)
        # encode: cropped to the image's own size, resized to the size asked for, the alpha
        # channel resized beside it
        out_format = options.format or image.source_format
        s = self.scale
        wide = image.wide_rgb is not None and out_format == "png"  # 16 bits in, 16 bits out
        blob, dropped = await loop.run_in_executor(
            self.encode_pool,
            _encode_upscaled,
            blended,
            (h * s, w * s),
            image,
            path.size,
            out_format,
            options.strip,
            wide,
        )
        for model in models:
            model.count_pixels(h * w * s * s)
        return Upscaled(
            self.name,
            self.version,
            out_format,
            (w, h),
            blob,
            models=[(m.name, m.version) for m in models],
            detail=path.detail,
            native_size=(w * s, h * s),
            size=path.size,
            bit_depth=16 if wide else 8,
            metadata_dropped=dropped,
        )

    async def _blend_rows(
        self,
        plan: TilePlan,
        jobs: list[list[asyncio.Future[Any]]],
        detail: float | None,
        cancel: CancelToken,
        progress: Progress | None = None,
    ) -> RowBlender:
        """Predict, row by row as they finish (both models' when blending), and unbatch into the
        output (memory: one band of rows)."""
        loop = asyncio.get_running_loop()
        blender = RowBlender(plan, self.scale, self.channels)
        total = len(plan.origins)
        if progress is not None:
            progress(0, total)
        try:
            for r in range(len(plan.ys)):
                tiles = [await rows[r] for rows in jobs]  # each (len(plan.xs), tile*s, tile*s, C) uint8
                weight = 0.0 if detail is None else detail
                await loop.run_in_executor(self.encode_pool, _add_row, blender, r, tiles, weight)
                if progress is not None:
                    progress((r + 1) * len(plan.xs), total)
        except BaseException:
            cancel.cancel()  # the rest of this image is useless now
            for rows in jobs:
                for row in rows:
                    row.cancel()
            await asyncio.gather(*(row for rows in jobs for row in rows), return_exceptions=True)
            raise
        return blender

    def count_pixels(self, pixels: int) -> None:
        self._pixels_upscaled.inc(pixels)


def _add_row(blender: RowBlender, row: int, tiles: list[np.ndarray], detail: float) -> None:
    """One tile row into the output; two models' tiles are blended first, (1 - detail) : detail,
    in float (the row blender rounds once, at the end)."""
    if len(tiles) == 1:
        blender.add_row(row, tiles[0])
        return
    faithful, sharp = (t.astype(np.float32) for t in tiles)
    blender.add_row(row, faithful + np.float32(detail) * (sharp - faithful))


def _encode_upscaled(
    blender: RowBlender,
    native: tuple[int, int],
    image: DecodedImage,
    size: OutputSize,
    fmt: str,
    strip: str,
    wide: bool,
) -> tuple[bytes, list[str]]:
    """The file, and the input's metadata that it could not carry (and why)."""
    height, width = native
    rgb = blender.result()[:height, :width]  # (h*s, w*s, C) uint8
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    alpha = image.alpha
    if wide:
        rgb, alpha = _widened(rgb, image)
    rgb = resize(rgb, size)
    if alpha is not None:
        alpha = resize(alpha[:, :, None], size)[:, :, 0]
    pixels = compose(np.ascontiguousarray(rgb), alpha, image.gray)
    in_h, in_w = image.rgb.shape[:2]
    factors = (size.resize_w / in_w, size.resize_h / in_h)
    metadata, dropped = metadata_for_output(image.metadata, (size.width, size.height), factors, strip)
    if fmt == "npy":  # an array holds no metadata: nothing is said to be dropped from it
        return encode_image(pixels, fmt), []
    dropped += metadata.fit(fmt, gray=pixels.shape[2] == 1)
    return encode_image(pixels, fmt, metadata), dropped


def _widened(rgb: np.ndarray, image: DecodedImage) -> tuple[np.ndarray, np.ndarray | None]:
    """A 16-bit input's output, (h*s, w*s, 3) uint16: the model ran on its values rounded to 8
    bits; what the rounding dropped (within half an 8-bit step) is resized beside the model's
    output and added back, so smooth 16-bit gradients stay smooth instead of banding at 8-bit
    steps. Its alpha: the 16-bit alpha (the resize follows)."""
    assert image.wide_rgb is not None
    rounding = image.wide_rgb.astype(np.float32) - image.rgb.astype(np.float32) * 257
    height, width = rgb.shape[:2]
    values = rgb.astype(np.float32) * 257 + resize_values(rounding, width, height)
    return np.clip(values + 0.5, 0, 65535).astype(np.uint16), image.wide_alpha


@dataclass(frozen=True)
class UpscalePath:
    """The upscaler(s) an /upscale request runs on and its output size (chosen by
    service.lifecycle.upscale_path, which reads the registry)."""

    model: Upscaler  # runs every tile; the path's factor is its own
    size: OutputSize
    blend: Upscaler | None = None  # the family's detail model, blended with `model`'s output
    detail: float | None = None  # blend's weight, as asked for (None: no detail asked)

    @property
    def models(self) -> list[Upscaler]:
        return [self.model] if self.blend is None else [self.model, self.blend]
