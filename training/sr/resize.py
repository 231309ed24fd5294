"""MATLAB's `imresize(image, scale)` with its default bicubic kernel, so that LR inputs and the
bicubic baseline are made the way published super-resolution tables make them.

What MATLAB does and this repeats: Keys' cubic kernel with a = -0.5; when shrinking, the kernel
is stretched by 1/scale (antialiasing); output pixel x (1-based) samples input position
x / scale + (1 - 1 / scale) / 2; pixels beyond an edge are mirrored (symmetric padding, the edge
pixel repeated); each row of weights sums to 1; height is resized before width. Each dimension is
one matrix product with a (out, in) weight matrix, so a batch on any device costs two matmuls.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

KERNEL_WIDTH = 4.0  # the cubic kernel's support, in input pixels at scale 1


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's `cubic`)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


@lru_cache(maxsize=64)
def resize_weights(in_size: int, out_size: int, scale: float) -> np.ndarray:
    """(out_size, in_size) float64 weights: output = weights @ input along one dimension."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"resize: sizes must be positive, got {in_size} -> {out_size}")
    shrink = scale < 1
    width = KERNEL_WIDTH / scale if shrink else KERNEL_WIDTH
    x = np.arange(1, out_size + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # the input position each output pixel samples (1-based)
    left = np.floor(u - width / 2)
    taps = math.ceil(width) + 2
    index = left[:, None] + np.arange(taps)[None, :]  # (out, taps), 1-based, may run off the edges
    distance = u[:, None] - index
    weights = scale * cubic(scale * distance) if shrink else cubic(distance)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # Symmetric padding: index 0 is pixel 1, index -1 is pixel 2, index n + 1 is pixel n, ...
    period = np.concatenate([np.arange(in_size), np.arange(in_size - 1, -1, -1)])
    source = period[np.mod(index.astype(np.int64) - 1, 2 * in_size)]
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    np.add.at(matrix, (np.repeat(np.arange(out_size), taps), source.ravel()), weights.ravel())
    return matrix


def imresize(x: torch.Tensor, scale: float) -> torch.Tensor:
    """(..., H, W) float -> (..., ceil(H * scale), ceil(W * scale)), MATLAB bicubic, unclamped."""
    h, w = x.shape[-2:]
    out_h, out_w = math.ceil(h * scale), math.ceil(w * scale)
    rows = torch.from_numpy(resize_weights(h, out_h, scale)).to(x.device, x.dtype)
    cols = torch.from_numpy(resize_weights(w, out_w, scale)).to(x.device, x.dtype)
    return rows @ x @ cols.T  # height first, then width


def imresize_uint8(image: np.ndarray, scale: float) -> np.ndarray:
    """(H, W) or (H, W, C) uint8 -> uint8, as MATLAB returns for uint8 input (rounded, clipped)."""
    planes = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float64))
    planes = planes.permute(2, 0, 1) if image.ndim == 3 else planes
    out = imresize(planes, scale).round().clamp(0, 255).to(torch.uint8)
    return (out.permute(1, 2, 0) if image.ndim == 3 else out).numpy()
