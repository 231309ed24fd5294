"""MATLAB-compatible bicubic resizing: the kernel, the antialiasing, the mirrored edges."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from training.sr.degradation import downsample, upsample_bicubic
from training.sr.resize import imresize, imresize_uint8, resize_weights


def test_shrinking_matches_antialiased_keys_cubic_away_from_the_edges() -> None:
    # torch's antialiased bicubic is Keys' a = -0.5 kernel stretched by the scale, as MATLAB's is;
    # the two differ only where MATLAB mirrors the edge and torch renormalises instead.
    x = torch.rand(2, 3, 96, 80, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for scale in (2, 4):
        ours = imresize(x, 1 / scale)
        theirs = F.interpolate(x, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False)
        assert ours.shape == theirs.shape == (2, 3, 96 // scale, 80 // scale)
        inner = slice(3, -3)
        assert torch.allclose(ours[..., inner, inner], theirs[..., inner, inner], atol=1e-9)
        assert not torch.allclose(ours, theirs, atol=1e-4)  # the edges do differ


def test_enlarging_matches_pil_bicubic_away_from_the_edges() -> None:
    rng = np.random.default_rng(1)
    plane = rng.random((40, 52)).astype(np.float32) * 255
    pil = np.asarray(Image.fromarray(plane, mode="F").resize((52 * 3, 40 * 3), Image.Resampling.BICUBIC))
    ours = imresize(torch.from_numpy(plane.astype(np.float64)), 3).numpy()
    assert ours.shape == pil.shape == (120, 156)
    assert np.abs(ours[6:-6, 6:-6] - pil[6:-6, 6:-6]).max() < 1e-2


def test_edges_are_mirrored_and_weights_sum_to_one() -> None:
    ramp = torch.arange(8, dtype=torch.float64)[None]  # (1, 8)
    up = imresize(ramp, 2)[0]
    # Interior: the a = -0.5 kernel reproduces a straight line exactly.
    assert torch.allclose(up[3:-3], torch.arange(16, dtype=torch.float64)[3:-3] / 2 - 0.25)
    # First output pixel samples position 0.75 (1-based); beyond the edge pixel k is pixel 1 - k + 1
    # mirrored, so the taps at 1.75, 0.75, 0.25, 1.25 see 1, 0, 0, 1: not the line's -0.25.
    expected = -0.0234375 * 1 + 0.2265625 * 0 + 0.8671875 * 0 - 0.0703125 * 1
    assert up[0].item() == pytest.approx(expected, abs=1e-12)
    for sizes in ((8, 16, 2.0), (64, 16, 0.25), (33, 11, 1 / 3)):
        assert np.allclose(resize_weights(*sizes).sum(axis=1), 1.0)
    flat = np.full((12, 10, 3), 77, dtype=np.uint8)
    assert (imresize_uint8(flat, 0.5) == 77).all() and imresize_uint8(flat, 0.5).shape == (6, 5, 3)
    with pytest.raises(ValueError, match="sizes must be positive"):
        resize_weights(0, 4, 2.0)


def test_training_inputs_and_the_baseline_use_it() -> None:
    hr = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    lr = downsample(hr, 4)
    assert torch.equal(lr, (imresize(hr, 0.25).clamp(0, 1) * 255).round() / 255)
    assert torch.equal(upsample_bicubic(lr, 4), imresize(lr, 4).clamp(0, 1))
