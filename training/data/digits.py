"""scikit-learn's bundled handwritten digits (1,797 images, 8x8, 10 classes), resized."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.data.base import DataInfo, ImageSplits, split_heldout


def load_digits_splits(resolution: int, heldout_fraction: float) -> ImageSplits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # (1797, 8, 8) in 0..16 -> (N, 1, 8, 8) in [0, 1] -> bilinear to (N, 1, R, R) -> [-1, 1]
    x = torch.from_numpy(bunch.images).float().div(16.0).unsqueeze(1)
    if resolution != 8:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 2 - 1).contiguous()
    y = torch.from_numpy(bunch.target).long()
    info = DataInfo("digits", "image", (1, resolution, resolution), [str(i) for i in range(10)])
    return split_heldout(info, x, y, heldout_fraction)
