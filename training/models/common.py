"""Pieces shared by the networks: optional spectral norm, the projection head, DCGAN init."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm


def maybe_sn(layer: nn.Module, enabled: bool) -> nn.Module:
    return spectral_norm(layer) if enabled else layer


class ProjectionHead(nn.Module):
    """D's output: linear(h) + <embed(y), h> (Miyato & Koyama 2018); plain linear if unconditional.

    h: (N, F) features -> (N,) logits.
    """

    def __init__(self, features: int, num_classes: int, sn: bool) -> None:
        super().__init__()
        self.linear = maybe_sn(nn.Linear(features, 1), sn)
        self.embed = maybe_sn(nn.Embedding(num_classes, features), sn) if num_classes > 0 else None

    def forward(self, h: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        out = self.linear(h).squeeze(1)
        if self.embed is not None:
            if labels is None:
                raise ValueError("a conditional discriminator needs labels")
            out = out + (self.embed(labels) * h).sum(dim=1)
        return out


def with_label(z: torch.Tensor, labels: torch.Tensor | None, embed: nn.Embedding | None) -> torch.Tensor:
    """G's input: z (N, latent) concatenated with the label embedding (N, embed) if conditional."""
    if embed is None:
        return z
    if labels is None:
        raise ValueError("a conditional generator needs labels")
    return torch.cat([z, embed(labels)], dim=1)


def dcgan_init(module: nn.Module) -> None:
    """N(0, 0.02) weights as in Radford et al.; BatchNorm scale N(1, 0.02)."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        # Under spectral norm `weight` is recomputed on access; initialise the stored original.
        parametrized: Any = module  # nn.Module attributes are untyped
        weight = (
            parametrized.parametrizations.weight.original
            if parametrize.is_parametrized(module, "weight")
            else module.weight
        )
        nn.init.normal_(weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
