"""Tiled super-resolution of an image of any size: fixed-size overlapping tiles, seam-free blending.

Part of the export/serving seam (numpy only): training evaluates upscalers with it and the service
runs the same plan and blend around ONNX Runtime: tiles of one shape, memory bounded by the tile
size, tiles batched with other images'. Where two tiles overlap by `overlap` LR pixels, the outer
quarter of the band by each tile's inner edge is discarded and the middle half cross-faded
linearly: equal to untiled inference (up to float rounding) when overlap // 4 is at least the
model's receptive radius.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]  # (B, C, th, tw) -> (B, C, th*s, tw*s), float32


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of an (h, w) LR image lie: every tile is tile_h x tile_w LR pixels."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]
    overlap: int

    @property
    def origins(self) -> list[tuple[int, int]]:
        return [(y, x) for y in self.ys for x in self.xs]


def axis_starts(length: int, tile: int, overlap: int) -> tuple[int, ...]:
    """Tile starts along one axis: every `tile - overlap` pixels, the last one flush with the end
    (so it overlaps its neighbour by at least `overlap`, and every tile has the same size)."""
    if length <= tile:
        return (0,)
    stride = tile - overlap
    return (*range(0, length - tile, stride), length - tile)


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> TilePlan:
    if height < 1 or width < 1:
        raise ValueError(f"cannot tile an empty image ({width}x{height})")
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(f"need tile >= 1 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}")
    return TilePlan(
        height,
        width,
        min(tile, height),
        min(tile, width),
        axis_starts(height, tile, overlap),
        axis_starts(width, tile, overlap),
        overlap,
    )


def pad_to_tile(image: np.ndarray, tile: int) -> np.ndarray:
    """(h, w, C) -> (max(h, tile), max(w, tile), C). Along an axis shorter than a tile the image is
    mirrored out to the tile's length (the pre-padding of Real-ESRGAN), so every tile a model runs
    has one shape whatever the image's size: one queue, one warmed-up shape, and the tiles of
    different images batch together. The padded part's output is cropped away afterwards; the
    mirror gives the pixels near the padded edge a plausible context, as an untiled run's zero
    padding would not."""
    h, w = image.shape[:2]
    pad = ((0, max(0, tile - h)), (0, max(0, tile - w))) + ((0, 0),) * (image.ndim - 2)
    if pad[0][1] == 0 and pad[1][1] == 0:
        return image
    return np.pad(image, pad, mode="reflect")


def axis_weights(start: int, size: int, length: int, overlap: int, scale: int) -> np.ndarray:
    """(size*scale,) blending weights of one tile along one axis, in output pixels: 0 in the dead
    zone at an inner edge, a linear ramp across the middle of the overlap, 1 elsewhere."""
    dead = (overlap // 4) * scale
    ramp = (overlap - 2 * (overlap // 4)) * scale
    n = size * scale
    i = np.arange(n, dtype=np.float64)
    weight = np.ones(n)
    if ramp > 0:
        rising = np.clip((i - dead + 0.5) / ramp, 0.0, 1.0)  # from the left edge
        falling = rising[::-1]  # from the right edge
        if start > 0:
            weight = np.minimum(weight, rising)
        if start + size < length:
            weight = np.minimum(weight, falling)
    return weight


def tile_weights(plan: TilePlan, y: int, x: int, scale: int) -> np.ndarray:
    """(tile_h*scale, tile_w*scale) weights of the tile at LR origin (y, x)."""
    wy = axis_weights(y, plan.tile_h, plan.height, plan.overlap, scale)
    wx = axis_weights(x, plan.tile_w, plan.width, plan.overlap, scale)
    return np.outer(wy, wx)


class TileBlender:
    """Accumulates upscaled tiles, in any order, into one (H, W, C) image: each tile weighted by
    tile_weights, the sum normalised at the end."""

    def __init__(self, plan: TilePlan, scale: int, channels: int) -> None:
        self.plan, self.scale = plan, scale
        self.out = np.zeros((plan.height * scale, plan.width * scale, channels), dtype=np.float64)
        self.weight_sum = np.zeros((plan.height * scale, plan.width * scale, 1), dtype=np.float64)

    def add(self, y: int, x: int, tile: np.ndarray) -> None:
        """tile: (tile_h*scale, tile_w*scale, C), the upscaled tile whose LR origin is (y, x)."""
        s, th, tw = self.scale, self.plan.tile_h, self.plan.tile_w
        weights = tile_weights(self.plan, y, x, s)[:, :, None]
        ys, xs = slice(y * s, (y + th) * s), slice(x * s, (x + tw) * s)
        self.out[ys, xs] += tile * weights
        self.weight_sum[ys, xs] += weights

    def result(self) -> np.ndarray:
        """(H*scale, W*scale, C) float64."""
        if (self.weight_sum <= 0).any():  # a plan that leaves a pixel uncovered is a bug, never a result
            raise AssertionError("tiled upscaling: some output pixels were covered by no tile")
        return self.out / self.weight_sum


class RowBlender:
    """The same blend as TileBlender, with memory bounded by one row of tiles: tiles are added a
    row at a time (top to bottom), and the output rows no later tile touches are normalised and
    written to a uint8 canvas at once. Holds the canvas plus one band of tile_h*scale rows."""

    def __init__(self, plan: TilePlan, scale: int, channels: int) -> None:
        self.plan, self.scale = plan, scale
        width = plan.width * scale
        self.canvas = np.empty((plan.height * scale, width, channels), dtype=np.uint8)
        self.band = np.zeros((plan.tile_h * scale, width, channels), dtype=np.float32)
        self.band_weight = np.zeros((plan.tile_h * scale, width, 1), dtype=np.float32)
        self.next_row = 0

    def add_row(self, row: int, tiles: np.ndarray) -> None:
        """tiles: (len(plan.xs), tile_h*scale, tile_w*scale, C), the upscaled tiles of row `row`."""
        if row != self.next_row:
            raise ValueError(f"rows must be added in order: expected row {self.next_row}, got {row}")
        plan, s = self.plan, self.scale
        y = plan.ys[row]
        wy = axis_weights(y, plan.tile_h, plan.height, plan.overlap, s)
        for x, tile in zip(plan.xs, tiles, strict=True):
            wx = axis_weights(x, plan.tile_w, plan.width, plan.overlap, s)
            weights = np.outer(wy, wx).astype(np.float32)[:, :, None]
            xs = slice(x * s, (x + plan.tile_w) * s)
            self.band[:, xs] += tile * weights
            self.band_weight[:, xs] += weights
        # Output rows above the next tile row are final.
        last = row + 1 == len(plan.ys)
        done = (plan.tile_h if last else plan.ys[row + 1] - y) * s
        weight = self.band_weight[:done]
        if (weight <= 0).any():
            raise AssertionError("tiled upscaling: some output pixels were covered by no tile")
        finished = np.clip(np.rint(self.band[:done] / weight), 0, 255)
        self.canvas[y * s : y * s + done] = finished.astype(np.uint8)
        # Carry the rows the next tile row overlaps to the top of the band.
        keep = self.band.shape[0] - done
        self.band[:keep] = self.band[done:]
        self.band[keep:] = 0
        self.band_weight[:keep] = self.band_weight[done:]
        self.band_weight[keep:] = 0
        self.next_row += 1

    def result(self) -> np.ndarray:
        if self.next_row != len(self.plan.ys):
            raise ValueError(f"{len(self.plan.ys) - self.next_row} tile rows were never added")
        return self.canvas


def extract_tiles(image: np.ndarray, plan: TilePlan, row: int | None = None) -> np.ndarray:
    """(h, w, C) image -> (tiles, tile_h, tile_w, C) in plan.origins order; or one row's tiles."""
    th, tw = plan.tile_h, plan.tile_w
    origins = plan.origins if row is None else [(plan.ys[row], x) for x in plan.xs]
    return np.stack([image[y : y + th, x : x + tw] for y, x in origins])


def tiled_upscale(
    predict: Predict,
    image: np.ndarray,
    scale: int,
    tile: int = 128,
    overlap: int = 32,
    batch: int = 8,
) -> np.ndarray:
    """(C, h, w) float32 LR image -> (C, h*scale, w*scale) float32, `batch` tiles per predict call."""
    if image.ndim != 3:
        raise ValueError(f"expected one (C, h, w) image, got shape {image.shape}")
    c, h, w = image.shape
    plan = plan_tiles(h, w, tile, overlap)
    th, tw = plan.tile_h, plan.tile_w
    blender = TileBlender(plan, scale, c)
    origins = plan.origins
    for first in range(0, len(origins), batch):
        chunk = origins[first : first + batch]
        tiles = np.stack([image[:, y : y + th, x : x + tw] for y, x in chunk])  # (B, C, th, tw)
        result = predict(np.ascontiguousarray(tiles, dtype=np.float32))
        expected = (len(chunk), c, th * scale, tw * scale)
        if result.shape != expected:
            raise ValueError(f"predict returned shape {result.shape} for {tiles.shape}; expected {expected}")
        for (y, x), sr in zip(chunk, result, strict=True):
            blender.add(y, x, sr.transpose(1, 2, 0))
    return blender.result().transpose(2, 0, 1).astype(np.float32)
