"""Tiled super-resolution of an image of any size: fixed-size overlapping tiles, seam-free blending.

numpy only (no torch), so the service can mirror it around an ONNX Runtime session: the model sees
tiles of one shape (or the whole image, when it is smaller than a tile), memory stays bounded by
the tile size, and tiles can be batched with other images' tiles.

Blending: where two tiles overlap by `overlap` LR pixels, the outer quarter of the band next to
each tile's inner edge is discarded (there the tile lacked the context the untiled image has) and
the middle half is cross-faded linearly. The result equals untiled inference exactly (up to float
rounding) when overlap // 4 is at least the model's receptive radius; with a smaller overlap the
cross-fade still hides the seams.
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
    out = np.zeros((c, h * scale, w * scale), dtype=np.float64)
    weight_sum = np.zeros((h * scale, w * scale), dtype=np.float64)
    origins = plan.origins
    for first in range(0, len(origins), batch):
        chunk = origins[first : first + batch]
        tiles = np.stack([image[:, y : y + th, x : x + tw] for y, x in chunk])  # (B, C, th, tw)
        result = predict(np.ascontiguousarray(tiles, dtype=np.float32))
        expected = (len(chunk), c, th * scale, tw * scale)
        if result.shape != expected:
            raise ValueError(f"predict returned shape {result.shape} for {tiles.shape}; expected {expected}")
        for (y, x), sr in zip(chunk, result, strict=True):
            weights = tile_weights(plan, y, x, scale)
            ys, xs = slice(y * scale, (y + th) * scale), slice(x * scale, (x + tw) * scale)
            out[:, ys, xs] += sr * weights
            weight_sum[ys, xs] += weights
    if (weight_sum <= 0).any():  # a plan that leaves a pixel uncovered is a bug, never a result
        raise AssertionError("tiled_upscale: some output pixels were covered by no tile")
    return (out / weight_sum).astype(np.float32)
