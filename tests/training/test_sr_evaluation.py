"""Validation and test evaluation: the bicubic baseline, comparison strips, the detail crop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from training.models.srresnet import SRResNetConfig, SRResNetGenerator
from training.sr.evaluation import comparison_strip, detail_crop, evaluate_sr, mod_crop


def _textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC))


def test_an_untrained_model_scores_as_bicubic(tmp_path: Path) -> None:
    """SRResNet starts as bicubic upsampling (torch's, Keys a = -0.75), so against the baseline
    (MATLAB's, a = -0.5) its gain starts near 0: a little above, as the sharper kernel is."""
    model = SRResNetGenerator(SRResNetConfig(scale=2, width=8, blocks=1)).eval()
    images = {"a.png": skimage.data.coffee()[100:300, 200:430], "b": _textured(40, 50, 1)}
    result = evaluate_sr(model, images, 2, tile=48, overlap=8, batch=4, compare_dir=tmp_path)
    assert result["images"] == 2 and set(result["per_image"]) == {"a.png", "b"}
    gain = result["per_image"]["a.png"]["psnr_y"] - result["per_image"]["a.png"]["psnr_y_bicubic"]
    assert 0 < gain < 0.5
    assert result["ssim"] == pytest.approx(result["ssim_bicubic"], abs=0.01)
    # NIQE needs two 96x96 blocks: "a" has it, "b" has none, and the mean is a's.
    assert result["niqe"] == pytest.approx(result["niqe_bicubic"], abs=0.5)
    assert "niqe" in result["per_image"]["a.png"] and "niqe" not in result["per_image"]["b"]
    assert result["niqe_hr"] == result["per_image"]["a.png"]["niqe_hr"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]
    with Image.open(tmp_path / "a.png") as strip:
        assert strip.width > 3 * strip.height  # four panels side by side


def test_mod_crop_keeps_multiples_of_the_scale() -> None:
    assert mod_crop(np.zeros((67, 91, 3)), 4).shape == (64, 88, 3)
    assert mod_crop(np.zeros((64, 88, 3)), 4).shape == (64, 88, 3)


def test_detail_crop_finds_the_textured_region() -> None:
    image = np.full((200, 300, 3), 128, np.uint8)
    image[120:180, 200:260] = np.random.default_rng(0).integers(0, 256, (60, 60, 3))
    y, x = detail_crop(image, 64, 4)
    assert y % 4 == 0 and x % 4 == 0
    assert 120 - 64 < y <= 120 and 200 - 64 < x <= 200
    assert detail_crop(image[:50], 64, 4) == (0, 0)  # smaller than the window


def test_comparison_strip_panels_line_up() -> None:
    hr = _textured(96, 128)
    triplet = {"lr": hr[::4, ::4], "bicubic": hr, "sr": hr, "hr": hr}
    strip = comparison_strip(triplet, 4, size=64)
    zoom = 3  # 64-pixel crops are enlarged to at least 192
    assert strip.shape == (64 * zoom, 4 * 64 * zoom + 3 * 4, 3)
    assert strip.dtype == np.uint8
