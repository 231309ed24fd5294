"""A served super-resolution model: /upscale.

An upload is decoded, mirrored out to at least one tile (`pad_to_tile`), and cut into overlapping
tiles of the one shape the model runs: each row of tiles is one job, all queued at once while the
decode gate is still held, so the tiles of one image, and of other images, share batches. The
upscaled rows are blended into the output as they come back (memory: one band of rows), cropped to
the image's own size, and encoded with the alpha channel upscaled beside the colour.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from model_repository.tiling import RowBlender, extract_tiles, pad_to_tile, plan_tiles
from service.batching import CancelToken
from service.config import Settings
from service.encoding import encode_image
from service.errors import PayloadTooLarge
from service.imaging import DecodedImage, compose, decode_image, upscale_alpha
from service.runtime import CPU
from service.schemas import Upscaled
from service.served.model import ServedModel, request


class Upscaler(ServedModel):
    task = "upscale"
    kind_name = "upscale"
    memory_pattern = False  # see service.runtime.make_session

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        section = self.manifest["upscaler"]
        self.scale = int(section["scale"])
        self.channels = int(section["channels"])
        self.tile = int(section["tile"])
        self.overlap = int(section["overlap"])
        self._pixels_upscaled = self.metrics.pixels_upscaled.labels(self.name, str(self.version))

    @staticmethod
    def batch_limits(settings: Settings, provider: str) -> tuple[int, int]:
        # On CPU one tile a batch: measured, a batch of 4 x4 tiles ran no faster per tile (9.3
        # against 9.9 tiles/s on 2 cores) and needs 4 times the memory. A GPU wants batches.
        tiles = settings.max_batch_tiles or (1 if provider == CPU else 4)
        return tiles, settings.max_queue_tiles

    def accepts(self) -> dict[str, Any]:
        return {"endpoints": ["/upscale"], "upscale": ["model", "format"], "scale": self.scale}

    def run_batch(self, rows: dict[str, np.ndarray]) -> np.ndarray:
        """On a lane: image (B, tile, tile, C) uint8 -> (B, tile*s, tile*s, C) uint8."""
        return self.runtime.run(rows)

    def warm_up_rows(self, units: int) -> dict[str, np.ndarray]:
        return {"image": np.zeros((units, self.tile, self.tile, self.channels), np.uint8)}

    def _decode(self, data: bytes) -> tuple[DecodedImage, np.ndarray]:
        """On the encode pool: the upload's pixels, and the same mirrored out to at least a tile.
        The padded size counts against max_input_pixels too: the output is blended at that size
        (a 21x49,000 strip would become 128x49,000)."""
        limit = self.settings.max_input_pixels
        image = decode_image(data, limit)
        pixels = image.rgb if self.channels == 3 else image.rgb[:, :, :1]
        h, w = pixels.shape[:2]
        padded_h, padded_w = max(h, self.tile), max(w, self.tile)
        if padded_h * padded_w > limit:
            raise PayloadTooLarge(
                f"the image is {w}x{h}; a side shorter than the model's tile ({self.tile}) is padded to "
                f"it, which makes {padded_w}x{padded_h} = {padded_w * padded_h} pixels; this server "
                f"takes at most {limit}"
            )
        return image, pad_to_tile(pixels, self.tile)

    @request
    async def upscale(self, data: bytes, fmt: str | None, deadline: float, cancel: CancelToken) -> Upscaled:
        """The image file `data` upscaled, encoded as `fmt` (None: the input's format)."""
        loop = asyncio.get_running_loop()
        # decode, then cut into tiles; every tile row is one job, all queued before the gate opens
        with self.gate.held():
            image, padded = await loop.run_in_executor(self.encode_pool, self._decode, data)
            h, w = image.rgb.shape[:2]
            plan = plan_tiles(padded.shape[0], padded.shape[1], self.tile, self.overlap)
            self.batcher.check_room(len(plan.origins))
            rows: list[asyncio.Future[Any]] = []
            try:
                for r in range(len(plan.ys)):
                    rows.append(
                        self.batcher.enqueue({"image": extract_tiles(padded, plan, r)}, deadline, cancel)
                    )
            except BaseException:  # the queue filled, or the deadline cannot be met, midway
                for row in rows:  # the rows already queued are dropped before they run
                    row.cancel()
                raise
        # predict, row by row as they finish; unbatch into the output (memory: one band of rows)
        blender = RowBlender(plan, self.scale, self.channels)
        try:
            for r, row in enumerate(rows):
                tiles = await row  # (len(plan.xs), tile*s, tile*s, C) uint8
                await loop.run_in_executor(self.encode_pool, blender.add_row, r, tiles)
        except BaseException:
            cancel.cancel()  # the rest of this image is useless now
            for row in rows:
                row.cancel()
            await asyncio.gather(*rows, return_exceptions=True)
            raise
        # encode, cropped to the image's own size, with the alpha channel upscaled beside it
        out_format = fmt or image.source_format
        s = self.scale
        blob = await loop.run_in_executor(
            self.encode_pool, _encode_upscaled, blender, (h * s, w * s), image, s, out_format
        )
        self._pixels_upscaled.inc(h * w * s * s)
        return Upscaled(self.name, self.version, out_format, (w, h), (w * s, h * s), blob)


def _encode_upscaled(
    blender: RowBlender, size: tuple[int, int], image: DecodedImage, scale: int, fmt: str
) -> bytes:
    height, width = size
    rgb = blender.result()[:height, :width]
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    alpha = upscale_alpha(image.alpha, scale) if image.alpha is not None else None
    return encode_image(compose(np.ascontiguousarray(rgb), alpha, image.gray), fmt)
