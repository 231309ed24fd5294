"""Evaluate an upscaler on whole validation or test images, beside MATLAB's bicubic baseline.

Each HR image is cropped to a multiple of the scale, downsampled exactly as in training (MATLAB's
bicubic, without the optional degradations), upscaled by tiled inference, and rounded to 8 bits as
the service would return it. Scores on Y with `scale` pixels shaved off each border: PSNR and SSIM
against the HR image, and NIQE (no reference; lower is more natural) of the output, of the bicubic
baseline and of the HR image itself.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model_repository.tiling import tiled_upscale
from training.sr import metrics
from training.sr.data import HRImages
from training.sr.degradation import downsample, upsample_bicubic
from training.sr.niqe import niqe

NIQE_KEYS = (("sr", "niqe"), ("bicubic", "niqe_bicubic"), ("hr", "niqe_hr"))


def mod_crop(image: np.ndarray, scale: int) -> np.ndarray:
    """(H, W, C) -> the top-left part whose sides are multiples of `scale`."""
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]."""
    return torch.tensor(image).permute(2, 0, 1)[None].float() / 255  # a copy: inputs may be read-only


def to_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8, rounded as an 8-bit output would be."""
    array = image.numpy() if isinstance(image, torch.Tensor) else image
    return (np.clip(array, 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)


def torch_predict(model: nn.Module, device: torch.device) -> Any:
    """The model as tiled_upscale's `predict`: numpy (B, C, h, w) in, numpy out."""

    @torch.no_grad()
    def predict(tiles: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(tiles).to(device)).float().cpu().numpy()

    return predict


def upscale_triplet(
    model: nn.Module, hr: np.ndarray, scale: int, tile: int, overlap: int, batch: int
) -> dict[str, np.ndarray]:
    """LR, bicubic, SR and HR versions of one image, each (H, W, 3) uint8 (LR is h x w)."""
    hr = mod_crop(hr, scale)
    lr = downsample(to_tensor(hr).double(), scale)  # (1, 3, h, w), resized in float64 as MATLAB does
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        sr = tiled_upscale(torch_predict(model, device), lr[0].float().numpy(), scale, tile, overlap, batch)
    finally:
        model.train(was_training)
    return {
        "lr": to_uint8(lr[0]),
        "bicubic": to_uint8(upsample_bicubic(lr, scale)[0]),
        "sr": to_uint8(sr),
        "hr": hr,
    }


def score(triplet: dict[str, np.ndarray], scale: int) -> dict[str, float]:
    y = {k: metrics.shave(metrics.rgb_to_y(v), scale) for k, v in triplet.items() if k != "lr"}
    result = {
        "psnr_y": metrics.psnr(y["sr"], y["hr"]),
        "psnr_y_bicubic": metrics.psnr(y["bicubic"], y["hr"]),
        "ssim": metrics.ssim(y["sr"], y["hr"]),
        "ssim_bicubic": metrics.ssim(y["bicubic"], y["hr"]),
    }
    return result | niqe_scores(y)


def niqe_scores(y: dict[str, np.ndarray]) -> dict[str, float]:
    """NIQE of the output, the bicubic baseline and the HR image, on 8-bit luma (as MATLAB's
    rgb2ycbcr gives it); none for an image under two 96x96 blocks or too flat to fit (NIQE
    refuses both)."""
    try:
        return {name: niqe(y[key].round()) for key, name in NIQE_KEYS}
    except ValueError:
        return {}


def evaluate_sets(
    model: nn.Module,
    images: HRImages,
    sets: tuple[str, ...],
    scale: int,
    tile: int,
    overlap: int,
    batch: int,
    limit: int = 0,
    compare_dir: Path | None = None,
) -> dict[str, Any]:
    """evaluate_sr on each of `sets` ("validation", "test"), its means prefixed with the set's
    name (validation_psnr_y, test_psnr_y, ...), beside what the sets are (validation_set,
    test_set); per-image scores under per_image[set], comparisons under compare_dir/set/."""
    result: dict[str, Any] = {}
    per_image: dict[str, Any] = {}
    for which in sets:
        scored = images.evaluation_set(which, limit)
        result[f"{which}_set"] = images.describe(which, list(scored))
        part = evaluate_sr(
            model,
            scored,
            scale,
            tile,
            overlap,
            batch,
            compare_dir / which if compare_dir is not None else None,
        )
        per_image[which] = part.pop("per_image")
        result.update({f"{which}_{key}": value for key, value in part.items()})
    result["per_image"] = per_image
    return result


def evaluate_sr(
    model: nn.Module,
    images: dict[str, np.ndarray],
    scale: int,
    tile: int,
    overlap: int,
    batch: int,
    compare_dir: Path | None = None,
) -> dict[str, Any]:
    """Mean scores over the images (and each image's under `per_image`); with
    `compare_dir`, one LR | bicubic | SR | HR comparison PNG per image."""
    per_image: dict[str, dict[str, float]] = {}
    for name, hr in images.items():
        triplet = upscale_triplet(model, hr, scale, tile, overlap, batch)
        per_image[name] = score(triplet, scale)
        if compare_dir is not None:
            save_comparison(triplet, scale, compare_dir / f"{_file_stem(name)}.png")
    # Means over the images that have each score (an image too small for NIQE has no NIQE).
    keys = dict.fromkeys(k for scores in per_image.values() for k in scores)
    result: dict[str, Any] = {k: float(np.mean([s[k] for s in per_image.values() if k in s])) for k in keys}
    result["psnr_gain_db"] = result["psnr_y"] - result["psnr_y_bicubic"]
    result["ssim_gain"] = result["ssim"] - result["ssim_bicubic"]
    result["images"] = len(per_image)
    result["per_image"] = per_image
    return result


def detail_crop(hr: np.ndarray, size: int, scale: int) -> tuple[int, int]:
    """Top-left corner (a multiple of `scale`) of the size x size HR window with the most detail
    (largest mean gradient), so comparison crops show texture rather than flat background."""
    y_img = metrics.rgb_to_y(hr)
    h, w = y_img.shape
    if h <= size or w <= size:
        return 0, 0
    detail = np.abs(np.diff(y_img, axis=0))[:, :-1] + np.abs(np.diff(y_img, axis=1))[:-1, :]
    # Integral image: the detail inside any window in O(1).
    total = np.pad(detail.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    step = max(scale, size // 4 // scale * scale)
    ys = np.arange(0, h - size + 1, step)[:, None]
    xs = np.arange(0, w - size + 1, step)[None, :]
    n = size - 1
    sums = total[ys + n, xs + n] - total[ys, xs + n] - total[ys + n, xs] + total[ys, xs]
    best_y, best_x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(ys[best_y, 0]), int(xs[0, best_x])


def comparison_strip(triplet: dict[str, np.ndarray], scale: int, size: int = 128) -> np.ndarray:
    """One row of HR-sized crops: LR (nearest-enlarged) | bicubic | SR | HR, 4-pixel white gutters,
    each enlarged 2x (nearest) when small so the differences are visible."""
    hr = triplet["hr"]
    size = min(size, hr.shape[0], hr.shape[1]) // scale * scale
    y, x = detail_crop(hr, size, scale)
    lr = triplet["lr"][y // scale : (y + size) // scale, x // scale : (x + size) // scale]
    panels = [np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)]
    panels += [triplet[k][y : y + size, x : x + size] for k in ("bicubic", "sr", "hr")]
    zoom = max(1, math.ceil(192 / size))
    panels = [np.repeat(np.repeat(p, zoom, axis=0), zoom, axis=1) for p in panels]
    gutter = np.full((panels[0].shape[0], 4, 3), 255, dtype=np.uint8)
    parts: list[np.ndarray] = []
    for panel in panels:
        parts += [panel, gutter]
    return np.concatenate(parts[:-1], axis=1)


def save_comparison(triplet: dict[str, np.ndarray], scale: int, path: Path) -> None:
    from PIL import Image, ImageDraw

    strip = comparison_strip(triplet, scale)
    header = 18
    canvas = Image.new("RGB", (strip.shape[1], strip.shape[0] + header), "white")
    canvas.paste(Image.fromarray(strip), (0, header))
    draw = ImageDraw.Draw(canvas)
    panel_width = (strip.shape[1] + 4) // 4
    for i, label in enumerate(("LR (input)", "bicubic", "SR (model)", "HR (truth)")):
        draw.text((i * panel_width + 4, 3), label, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def _file_stem(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in Path(name).with_suffix("").as_posix())
