"""The fully connected G and D of the textbook GAN (Goodfellow et al. 2014), optionally conditional."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from training.models.common import ProjectionHead, maybe_sn, with_label


@dataclass
class MLPGeneratorConfig:
    latent_dim: int = 64
    out_shape: tuple[int, ...] = (2,)  # (2,) for toy points, (C, H, W) for images
    hidden: int = 128
    layers: int = 3
    num_classes: int = 0  # 0: unconditional
    embed_dim: int = 32
    output_activation: str = "none"  # "tanh" for images in [-1, 1]


@dataclass
class MLPDiscriminatorConfig:
    in_shape: tuple[int, ...] = (2,)
    hidden: int = 128
    layers: int = 3
    num_classes: int = 0
    spectral_norm: bool = False


class MLPGenerator(nn.Module):
    def __init__(self, config: MLPGeneratorConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.num_classes, c.embed_dim) if c.num_classes > 0 else None
        width = c.latent_dim + (c.embed_dim if c.num_classes > 0 else 0)
        blocks: list[nn.Module] = []
        for _ in range(c.layers):
            blocks += [nn.Linear(width, c.hidden), nn.ReLU()]
            width = c.hidden
        blocks.append(nn.Linear(width, math.prod(c.out_shape)))
        if c.output_activation == "tanh":
            blocks.append(nn.Tanh())
        elif c.output_activation != "none":
            raise ValueError(f"output_activation: {c.output_activation!r} is not tanh or none")
        self.net = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        # z: (N, latent) [+ (N, embed)] -> (N, *out_shape)
        out = self.net(with_label(z, labels, self.embed))
        return out.view(z.shape[0], *self.config.out_shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, config: MLPDiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        width = math.prod(c.in_shape)
        blocks: list[nn.Module] = []
        for _ in range(c.layers):
            blocks += [maybe_sn(nn.Linear(width, c.hidden), c.spectral_norm), nn.LeakyReLU(0.2)]
            width = c.hidden
        self.body = nn.Sequential(*blocks)
        self.head = ProjectionHead(width, c.num_classes, c.spectral_norm)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        # x: (N, *in_shape) -> h: (N, hidden) -> (N,) logits
        return self.head(self.body(x.flatten(1)), labels)
