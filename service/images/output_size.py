"""What size an upscale answers at, and which path makes it: one served model's native factor,
then an antialiased resize to the exact size asked for.

A size is asked for by nothing (the model's own factor), `scale` (one factor for both axes, 1 to
the largest served model's), or `width` and/or `height` with `fit`: `contain` (the largest size
inside, aspect kept, no padding), `cover` (the smallest size covering, aspect kept, centre-cropped),
`exact` (each axis its own factor). The path: the served faithful model with the largest factor
not above the one asked for (or the smallest model), then a resize of its output; the reverse
(a larger model, resized down) measured worse and slower (bench/upscale_paths.py, docs/api.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from contract.endpoints import UPSCALE
from contract.errors import InvalidRequest

Fit = str  # "contain" | "cover" | "exact"
# The resize after the model: Lanczos (3 lobes) for both directions. bench/upscale_paths.py
# measured it against bicubic on both paths.
RESAMPLE = Image.Resampling.LANCZOS


@dataclass(frozen=True)
class OutputSize:
    """The answer's size, and how it is made from the input's (w, h)."""

    width: int
    height: int
    # The image is resized to (resize_w, resize_h), then a (width, height) window at (left, top)
    # is cut from it; only `cover` cuts anything.
    resize_w: int
    resize_h: int
    factor: float  # the larger of the two axes' factors: what the model path is chosen for
    left: int = 0
    top: int = 0


def plan_output_size(
    in_w: int,
    in_h: int,
    *,
    native: int,
    largest: int,
    scale: float | None = None,
    width: int | None = None,
    height: int | None = None,
    fit: Fit | None = None,
) -> OutputSize:
    """The output size for an (in_w, in_h) input. `native`: the factor of the model asked for by
    name (or of the smallest served one), used when no size is asked; `largest`: the largest
    served factor, the most any axis may be enlarged. InvalidRequest for a size out of range."""
    broken = UPSCALE.broken_rule({"scale": scale, "width": width, "height": height, "fit": fit})
    if broken is not None:
        raise InvalidRequest(broken)
    if scale is not None:
        _check_factor(scale, largest, "scale")
        w, h = _rounded(in_w * scale), _rounded(in_h * scale)
        return _size(in_w, in_h, w, h, w, h)
    if width is None and height is None:
        w, h = in_w * native, in_h * native
        return _size(in_w, in_h, w, h, w, h)
    if width is None or height is None:  # one side given: the other follows the aspect
        factor = width / in_w if width is not None else height / in_h  # type: ignore[operator]
        _check_factor(factor, largest, "width" if width is not None else "height", in_w, in_h)
        w = width if width is not None else _rounded(in_w * factor)
        h = height if height is not None else _rounded(in_h * factor)
        return _size(in_w, in_h, w, h, w, h)
    fx, fy = width / in_w, height / in_h
    mode = fit or "contain"
    if mode == "exact":
        _check_factor(fx, largest, "width", in_w, in_h)
        _check_factor(fy, largest, "height", in_w, in_h)
        return _size(in_w, in_h, width, height, width, height)
    if mode == "contain":
        factor = min(fx, fy)
        _check_factor(factor, largest, "width and height (fit contain)", in_w, in_h)
        w, h = min(width, _rounded(in_w * factor)), min(height, _rounded(in_h * factor))
        return _size(in_w, in_h, w, h, w, h)
    if mode == "cover":
        factor = max(fx, fy)
        _check_factor(factor, largest, "width and height (fit cover)", in_w, in_h)
        rw, rh = max(width, _rounded(in_w * factor)), max(height, _rounded(in_h * factor))
        return _size(in_w, in_h, width, height, rw, rh, (rw - width) // 2, (rh - height) // 2)
    raise InvalidRequest(f"fit must be contain, cover or exact, got {fit!r}")


def _size(in_w: int, in_h: int, w: int, h: int, rw: int, rh: int, left: int = 0, top: int = 0) -> OutputSize:
    return OutputSize(w, h, rw, rh, max(rw / in_w, rh / in_h), left, top)


def choose_scale(factor: float, scales: Sequence[int]) -> int:
    """The model factor a path starts from: the largest not above `factor` (then a resize up), or
    the smallest when every model enlarges more (then a resize down)."""
    below = [s for s in scales if s <= factor + 1e-9]
    return max(below) if below else min(scales)


def resize(pixels: np.ndarray, size: OutputSize) -> np.ndarray:
    """(H, W, C) uint8 or uint16 -> (size.height, size.width, C), antialiased; unchanged when the
    model's output is already the size."""
    h, w, c = pixels.shape
    if (w, h) == (size.resize_w, size.resize_h) and (size.width, size.height) == (w, h):
        return pixels
    if (w, h) != (size.resize_w, size.resize_h):
        channels = [_resize_plane(pixels[:, :, i], size.resize_w, size.resize_h) for i in range(c)]
        pixels = np.stack(channels, axis=2)
    top, left = size.top, size.left
    return np.ascontiguousarray(pixels[top : top + size.height, left : left + size.width])


def resize_values(values: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, C) float32 -> (height, width, C) float32, neither rounded nor clipped."""
    planes = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(values[:, :, i], np.float32), "F").resize(
                (width, height), RESAMPLE, reducing_gap=None
            )
        )
        for i in range(values.shape[2])
    ]
    return np.stack(planes, axis=2)


def _resize_plane(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    """One channel, in float32 so 16-bit planes keep their precision and 8-bit ones round once."""
    top = 255.0 if plane.dtype == np.uint8 else 65535.0
    out = resize_values(plane[:, :, None].astype(np.float32), width, height)[:, :, 0]
    return np.clip(out + 0.5, 0, top).astype(plane.dtype)


def _rounded(value: float) -> int:
    return max(1, math.floor(value + 0.5))


def _check_factor(factor: float, largest: int, what: str, in_w: int = 0, in_h: int = 0) -> None:
    if 1.0 - 1e-9 <= factor <= largest + 1e-9:
        return
    asked = f"{what} asks for a factor of {factor:.3g}" if in_w else f"scale is {factor:g}"
    size = f" of the {in_w}x{in_h} input" if in_w else ""
    raise InvalidRequest(
        f"{asked}{size}; an upscale enlarges by 1 to {largest} (the largest served model's factor)"
    )
