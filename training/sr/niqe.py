"""NIQE, the Natural Image Quality Evaluator (Mittal, Soundararajan and Bovik, IEEE SPL 2013): a
no-reference measure of how far an image's local statistics are from those of pristine natural
photographs. Lower is better. Noise and blur both move the statistics away, so it does not reward
an upscaler for adding noise, as a sharpness count would; PIRM 2018 ranked perceptual
super-resolution with it.

The pristine model is the authors' own (the mean and covariance of the 36 features over their 125
pristine photographs, `modelparameters.mat` of the reference MATLAB code), stored in
`niqe_pristine.npz` as redistributed by BasicSR 1.4.2 (Apache-2.0,
basicsr/metrics/niqe_pris_params.npz), so the numbers compare with published NIQE tables. The
computation follows the reference `computequality.m`: 96x96 blocks, two scales (the second made
with MATLAB's bicubic imresize), 18 features a scale from asymmetric generalised Gaussian fits of
the mean-subtracted contrast-normalised coefficients and of their products with four neighbours.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from scipy.special import gamma

from training.sr.resize import imresize

BLOCK = 96
PRISTINE = Path(__file__).with_name("niqe_pristine.npz")
NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (1, -1))  # circular shifts (rows, cols), as MATLAB's circshift


@lru_cache(maxsize=1)
def pristine_model() -> tuple[np.ndarray, np.ndarray]:
    """The pristine features' mean (36,) and covariance (36, 36)."""
    with np.load(PRISTINE) as saved:
        return saved["mu"], saved["cov"]


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    """MATLAB's fspecial('gaussian', 7, 7/6), normalised: (7, 7)."""
    t = np.arange(-3, 4, dtype=np.float64)
    g = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * (7 / 6) ** 2))
    return g / g.sum()


@lru_cache(maxsize=1)
def _gamma_table() -> tuple[np.ndarray, np.ndarray]:
    """The shape parameters searched and their generalised Gaussian ratio r(alpha)."""
    alphas = np.arange(0.2, 10.001, 0.001)
    return alphas, gamma(2 / alphas) ** 2 / (gamma(1 / alphas) * gamma(3 / alphas))


def aggd_fit(values: np.ndarray) -> tuple[float, float, float]:
    """Asymmetric generalised Gaussian fit by moment matching: (shape, left scale, right scale)."""
    v = values.ravel()
    left, right = v[v < 0], v[v > 0]
    if left.size == 0 or right.size == 0:
        return math.nan, math.nan, math.nan
    left_std, right_std = math.sqrt(float(np.mean(left**2))), math.sqrt(float(np.mean(right**2)))
    gamma_hat = left_std / right_std
    r_hat = float(np.mean(np.abs(v))) ** 2 / float(np.mean(v**2))
    r_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    alphas, ratios = _gamma_table()
    alpha = float(alphas[np.argmin((ratios - r_norm) ** 2)])
    spread = math.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left_std * spread, right_std * spread


def block_features(mscn: np.ndarray) -> list[float]:
    """18 features of one block of normalised coefficients."""
    alpha, left, right = aggd_fit(mscn)
    features = [alpha, (left + right) / 2]
    for shift in NEIGHBOURS:
        alpha, left, right = aggd_fit(mscn * np.roll(mscn, shift, axis=(0, 1)))
        mean = (right - left) * gamma(2 / alpha) / gamma(1 / alpha) if math.isfinite(alpha) else math.nan
        features += [alpha, mean, left, right]
    return features


def mscn(image: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients: (I - mu) / (sigma + 1), local statistics
    from the 7x7 Gaussian window with replicated edges (MATLAB's imfilter 'replicate')."""
    from scipy.ndimage import correlate

    window = _window()
    mu = correlate(image, window, mode="nearest")
    sigma = np.sqrt(np.abs(correlate(image * image, window, mode="nearest") - mu * mu))
    return (image - mu) / (sigma + 1)


def niqe(luma: np.ndarray) -> float:
    """NIQE of a (H, W) luma image on the 0..255 scale (at least 2x2 blocks of 96 pixels)."""
    image = np.asarray(luma, dtype=np.float64)
    rows, cols = image.shape[0] // BLOCK, image.shape[1] // BLOCK
    if rows * cols < 2:
        raise ValueError(f"niqe: needs at least two {BLOCK}x{BLOCK} blocks, got a {image.shape} image")
    image = image[: rows * BLOCK, : cols * BLOCK]
    per_scale = []
    for scale in (1, 2):
        coefficients, size = mscn(image), BLOCK // scale
        per_scale.append(
            [
                block_features(coefficients[r * size : (r + 1) * size, c * size : (c + 1) * size])
                for r in range(rows)
                for c in range(cols)
            ]
        )
        if scale == 1:
            image = imresize(torch.from_numpy(image), 0.5).numpy()
    features = np.concatenate([np.array(f) for f in per_scale], axis=1)  # (blocks, 36)
    features = features[np.isfinite(features).all(axis=1)]  # a flat block has no fit (MATLAB's nan*)
    if features.shape[0] < 2:
        raise ValueError("niqe: fewer than two blocks with texture; the image is too flat to score")
    mu, cov = pristine_model()
    difference = mu - features.mean(axis=0)
    pooled = (cov + np.cov(features, rowvar=False)) / 2
    return float(math.sqrt(max(float(difference @ np.linalg.pinv(pooled) @ difference), 0.0)))
