"""NIQE: the reference implementation's number on a known image, and what it punishes."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from training.sr.data import TEST_PHOTOS
from training.sr.metrics import rgb_to_y
from training.sr.niqe import aggd_fit, niqe, pristine_model
from training.sr.resize import imresize


def _luma(image: np.ndarray) -> np.ndarray:
    return rgb_to_y(image).round()  # 8-bit Y, as MATLAB's rgb2ycbcr gives it


def test_the_pristine_model_is_the_authors() -> None:
    mu, cov = pristine_model()
    assert mu.shape == (36,) and cov.shape == (36, 36)
    assert np.allclose(cov, cov.T) and np.linalg.eigvalsh(cov).min() > -1e-9
    assert mu[0] == pytest.approx(2.60131368, abs=1e-8)  # the first feature's pristine mean


def test_niqe_agrees_with_the_reference_code_on_coffee() -> None:
    # 4.11533: BasicSR's port of the authors' MATLAB computequality.m on the same 8-bit Y of
    # scikit-image's coffee (measured once; that port reproduces MATLAB's numbers).
    assert niqe(_luma(skimage.data.coffee())) == pytest.approx(4.11533, abs=1e-3)


def test_noise_and_blur_both_score_worse() -> None:
    with Image.open(TEST_PHOTOS / "fig.png") as photo:
        y = _luma(np.asarray(photo.convert("RGB")))
    clean = niqe(y)
    noisy = np.clip(y + np.random.default_rng(0).normal(0, 6, y.shape), 0, 255).round()
    plane = torch.from_numpy(y)
    blurred = imresize(imresize(plane, 0.25), 4).numpy().clip(0, 255).round()
    assert niqe(noisy) > clean + 1 and niqe(blurred) > clean + 1


def test_images_it_cannot_score_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="at least two 96x96 blocks"):
        niqe(np.zeros((100, 150)))
    with pytest.raises(ValueError, match="too flat"):
        niqe(np.full((200, 200), 128.0))
    alpha, left, right = aggd_fit(np.random.default_rng(1).normal(size=20000))
    assert alpha == pytest.approx(2.0, abs=0.1) and left == pytest.approx(right, rel=0.05)
