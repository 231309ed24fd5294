"""How an LR input is made from an HR image: MATLAB's antialiased bicubic downsampling (as the
published tables make their inputs), 8-bit quantisation (the service receives 8-bit images), and
optional real-world degradations."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from training.sr.resize import imresize


def downsample(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> (N, C, H/scale, W/scale), MATLAB bicubic, quantised to 8 bits."""
    return quantize(_bicubic_down(hr, scale))


def _bicubic_down(hr: torch.Tensor, scale: int) -> torch.Tensor:
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"downsample: {h}x{w} is not a multiple of the scale {scale}")
    return imresize(hr, 1 / scale)


def upsample_bicubic(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The baseline every SR model must beat, MATLAB's bicubic (as in published tables):
    (N, C, h, w) -> (N, C, h*scale, w*scale) in [0, 1]."""
    return imresize(lr, scale).clamp(0, 1)


def quantize(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round() / 255


@dataclass
class Degradation:
    """Per-sample random degradations, each off at 0: blur before downsampling, then noise, then
    JPEG compression of the LR image."""

    blur: float = 0.0  # max Gaussian std in HR pixels
    noise: float = 0.0  # max Gaussian noise std, [0, 1] units
    jpeg: int = 0  # min JPEG quality; the quality is drawn from [jpeg, 95]

    @property
    def enabled(self) -> bool:
        return self.blur > 0 or self.noise > 0 or self.jpeg > 0

    def __call__(self, hr: torch.Tensor, scale: int, generator: torch.Generator) -> torch.Tensor:
        """(N, C, H, W) HR in [0, 1] -> degraded, 8-bit LR (N, C, H/scale, W/scale)."""
        if not self.enabled:
            return downsample(hr, scale)
        n = hr.shape[0]
        # Every draw happens whether or not it is used, so enabling one degradation does not shift
        # the random stream of the others.
        sigmas = torch.rand(n, generator=generator) * self.blur
        noise_std = torch.rand(n, generator=generator) * self.noise
        qualities = torch.randint(max(self.jpeg, 1), 96, (n,), generator=generator)
        if self.blur > 0:
            hr = torch.cat([gaussian_blur(hr[i : i + 1], float(sigmas[i])) for i in range(n)])
        lr = _bicubic_down(hr, scale)
        noise = torch.randn(lr.shape, generator=generator) * noise_std.view(n, 1, 1, 1)
        if self.noise > 0:
            lr = lr + noise
        lr = quantize(lr)
        if self.jpeg > 0:
            lr = torch.cat([jpeg_roundtrip(lr[i : i + 1], int(qualities[i])) for i in range(n)])
        return lr


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) with reflected borders; sigma < 0.1 is a no-op."""
    if sigma < 0.1:
        return x
    radius = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    padded = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(padded, kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def jpeg_roundtrip(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode one (1, 3, H, W) image in [0, 1] as JPEG at `quality` and decode it again."""
    from PIL import Image

    pixels = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as img:
        decoded = np.asarray(img.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(decoded).permute(2, 0, 1)[None]
