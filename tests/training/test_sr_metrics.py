"""PSNR and SSIM against known values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from training.sr.metrics import psnr, rgb_to_y, shave, ssim


def test_psnr_known_values() -> None:
    a = np.full((10, 10), 100.0)
    assert psnr(a, a + 5) == pytest.approx(10 * math.log10(255**2 / 25))  # 34.15 dB
    assert psnr(a, a + 5) == pytest.approx(34.1514, abs=1e-4)
    assert psnr(np.zeros((4, 4)), np.full((4, 4), 255.0)) == pytest.approx(0.0)
    assert psnr(a, a) == math.inf
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(a, a[:5])


def test_ssim_matches_the_reference_implementation() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((48, 64)) * 255
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255)
    reference = structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert ssim(a, b) == pytest.approx(reference, abs=1e-9)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, 255 - a) < 0  # anti-correlated structure


def test_ssim_rejects_tiny_or_mismatched_images() -> None:
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim(np.zeros((5, 5)), np.zeros((5, 5)))
    with pytest.raises(ValueError, match="shapes differ"):
        ssim(np.zeros((9, 9)), np.zeros((9, 10)))


def test_luma_range_and_shave() -> None:
    assert rgb_to_y(np.zeros((1, 1, 3), np.uint8))[0, 0] == pytest.approx(16.0)
    assert rgb_to_y(np.full((1, 1, 3), 255, np.uint8))[0, 0] == pytest.approx(235.0)
    assert shave(np.zeros((10, 12)), 2).shape == (6, 8)
    assert shave(np.zeros((10, 12)), 0).shape == (10, 12)
