"""Convolutional G and D after Radford et al. 2015 (DCGAN), optionally class-conditional.

G: z (+ label embedding) -> 4x4 feature map -> doubling blocks -> image in [-1, 1].
D: image -> halving strided convolutions down to 4x4 -> projection head. D has no BatchNorm, so
real and fake halves can share one forward pass and gradient penalties stay per-sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from training.models.common import ProjectionHead, dcgan_init, maybe_sn, with_label


@dataclass
class DCGANGeneratorConfig:
    latent_dim: int = 64
    channels: int = 1
    resolution: int = 32
    width: int = 64  # channels at full resolution; doubles each halving towards 4x4
    num_classes: int = 0
    embed_dim: int = 32
    upsample: str = "nearest"  # nearest (upsample + 3x3 conv) | transposed (4x4 stride-2)


@dataclass
class DCGANDiscriminatorConfig:
    channels: int = 1
    resolution: int = 32
    width: int = 64
    num_classes: int = 0
    spectral_norm: bool = False


def _levels(resolution: int) -> int:
    levels = int(math.log2(resolution)) - 2
    if resolution < 8 or 2 ** (levels + 2) != resolution:
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
    return levels


class DCGANGenerator(nn.Module):
    def __init__(self, config: DCGANGeneratorConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        levels = _levels(c.resolution)
        self.base_channels = c.width * 2**levels
        self.embed = nn.Embedding(c.num_classes, c.embed_dim) if c.num_classes > 0 else None
        in_features = c.latent_dim + (c.embed_dim if c.num_classes > 0 else 0)
        self.project = nn.Sequential(
            nn.Linear(in_features, self.base_channels * 16, bias=False),
            nn.BatchNorm1d(self.base_channels * 16),
            nn.ReLU(),
        )
        blocks: list[nn.Module] = []
        width = self.base_channels
        for _ in range(levels):
            blocks += [
                *self._up(width, width // 2, c.upsample),
                nn.BatchNorm2d(width // 2),
                nn.ReLU(),
            ]
            width //= 2
        blocks += [nn.Conv2d(width, c.channels, 3, padding=1), nn.Tanh()]
        self.body = nn.Sequential(*blocks)
        self.apply(dcgan_init)

    @staticmethod
    def _up(cin: int, cout: int, mode: str) -> list[nn.Module]:
        if mode == "nearest":
            return [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            ]
        if mode == "transposed":
            return [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False)]
        raise ValueError(f"upsample: {mode!r} is not nearest or transposed")

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        # z: (N, latent) -> (N, base*16) -> (N, base, 4, 4) -> ... -> (N, C, R, R)
        h = self.project(with_label(z, labels, self.embed))
        return self.body(h.view(z.shape[0], self.base_channels, 4, 4))


class DCGANDiscriminator(nn.Module):
    def __init__(self, config: DCGANDiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        sn = c.spectral_norm
        blocks: list[nn.Module] = [
            maybe_sn(nn.Conv2d(c.channels, c.width, 3, padding=1), sn),
            nn.LeakyReLU(0.2),
        ]
        width = c.width
        for _ in range(_levels(c.resolution)):
            blocks += [
                maybe_sn(nn.Conv2d(width, width * 2, 4, stride=2, padding=1), sn),
                nn.LeakyReLU(0.2),
            ]
            width *= 2
        self.body = nn.Sequential(*blocks)
        self.head = ProjectionHead(width * 16, c.num_classes, sn)
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        # x: (N, C, R, R) -> (N, width*2^levels, 4, 4) -> (N, F) -> (N,) logits
        return self.head(self.body(x).flatten(1), labels)
