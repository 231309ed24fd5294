"""Image quality measures for super-resolution, as the literature reports them.

PSNR and SSIM are computed on the luma (Y of ITU-R BT.601 YCbCr, range 16..235) of 8-bit images,
with `border` pixels shaved off each side (the usual choice is the scale factor), SSIM with an
11x11 Gaussian window (sigma 1.5) as in Wang et al. 2004.
"""

from __future__ import annotations

import math

import numpy as np


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 or float in 0..255 -> (H, W) float64 luma in 16..235."""
    rgb = np.asarray(image, dtype=np.float64)
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def shave(image: np.ndarray, border: int) -> np.ndarray:
    return image[border:-border, border:-border] if border > 0 else image


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB; infinite for identical images."""
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Mean structural similarity of two (H, W) images (Gaussian window, sigma 1.5)."""
    from scipy.ndimage import gaussian_filter

    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ: {a.shape} vs {b.shape}")
    if min(a.shape) < 7:
        raise ValueError(f"ssim: images must be at least 7x7, got {a.shape}")
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(v: np.ndarray) -> np.ndarray:
        return gaussian_filter(v, sigma=1.5, truncate=3.5)  # an 11x11 window

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    # Drop the window's half-width at the borders, where the filter saw reflected pixels.
    return float(ssim_map[5:-5, 5:-5].mean())
