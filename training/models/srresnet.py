"""Super-resolution networks: the SRResNet generator (Ledig et al. 2017) and a patch discriminator.

The generator is fully convolutional, so one set of weights upscales any input size. It predicts
the detail that bicubic interpolation misses: output = bicubic(x) + body(x).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.models.common import maybe_sn


@dataclass
class SRResNetConfig:
    scale: int = 4  # 2 or 4: one PixelShuffle(2) stage per factor of 2
    channels: int = 3
    width: int = 64
    blocks: int = 16

    def receptive_radius(self) -> int:
        """LR pixels of context one output pixel depends on (an upper bound): the overlap a tiled
        inference must discard at interior tile edges for tiles to match the whole image."""
        stages = int(math.log2(self.scale))
        # head conv + 2 convs per block + trunk conv + one conv per upsampling stage + tail conv,
        # each 3x3 (radius 1 at its own resolution, at most 1 LR pixel), and bicubic's 2 pixels.
        return 1 + 2 * self.blocks + 1 + stages + 1 + 2


class ResidualBlock(nn.Module):
    """conv-PReLU-conv plus identity; no batch norm (it hurts SR, Lim et al. 2017)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.PReLU(width),
            nn.Conv2d(width, width, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRResNetGenerator(nn.Module):
    """(N, C, h, w) in [0, 1] -> (N, C, h*scale, w*scale), roughly in [0, 1] (not clamped)."""

    def __init__(self, config: SRResNetConfig) -> None:
        super().__init__()
        if config.scale not in (2, 4):
            raise ValueError(f"SRResNet: scale must be 2 or 4, got {config.scale}")
        self.config = config
        w = config.width
        self.head = nn.Sequential(nn.Conv2d(config.channels, w, 3, padding=1), nn.PReLU(w))
        self.blocks = nn.Sequential(*(ResidualBlock(w) for _ in range(config.blocks)))
        self.trunk = nn.Conv2d(w, w, 3, padding=1)
        upsample: list[nn.Module] = []
        for _ in range(int(math.log2(config.scale))):
            upsample += [nn.Conv2d(w, 4 * w, 3, padding=1), nn.PixelShuffle(2), nn.PReLU(w)]
        self.upsample = nn.Sequential(*upsample)
        self.tail = nn.Conv2d(w, config.channels, 3, padding=1)
        # Start as plain bicubic: the body's last layer begins at zero, so step 0 is a fair baseline.
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)  # (N, w, h, w)
        h = h + self.trunk(self.blocks(h))  # global skip over the residual blocks
        h = self.upsample(h)  # (N, w, h*s, w*s)
        base = F.interpolate(x, scale_factor=self.config.scale, mode="bicubic", align_corners=False)
        return base + self.tail(h)


@dataclass
class PatchDiscriminatorConfig:
    channels: int = 3
    width: int = 32
    spectral_norm: bool = True


class PatchDiscriminator(nn.Module):
    """(N, C, H, W) in [0, 1] -> logits (N, 1, H/8, W/8), one per overlapping patch, and the
    intermediate activations (the SRGAN stage's feature loss compares them for SR and HR)."""

    def __init__(self, config: PatchDiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        w, sn = config.width, config.spectral_norm
        plan = [(config.channels, w, 1), (w, w, 2), (w, 2 * w, 1), (2 * w, 2 * w, 2)]
        plan += [(2 * w, 4 * w, 1), (4 * w, 4 * w, 2)]
        self.features = nn.ModuleList(
            nn.Sequential(
                maybe_sn(nn.Conv2d(cin, cout, 3 if stride == 1 else 4, stride, padding=1), sn),
                nn.LeakyReLU(0.2),
            )
            for cin, cout, stride in plan
        )
        self.head = maybe_sn(nn.Conv2d(4 * w, 1, 3, padding=1), sn)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = x * 2 - 1
        activations = []
        for layer in self.features:
            h = layer(h)
            activations.append(h)
        return self.head(h), activations
