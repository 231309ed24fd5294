"""Super-resolution objectives; each returns a scalar to minimise.

pixel:       L1, or Charbonnier sqrt((sr - hr)^2 + eps^2), a smooth L1 (Lai et al. 2017)
adversarial: nonsaturating and hinge as in training.losses, averaged over D's patch logits;
             relativistic average (Jolicoeur-Martineau 2018, ESRGAN): D judges whether a real
             patch looks more real than the average fake one, and vice versa
feature:     L1 between the discriminator's activations on SR and on HR (feature matching,
             Salimans et al. 2016 / pix2pixHD), in place of the VGG loss, whose weights cannot
             be downloaded here
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training import losses as gan_losses

CHARBONNIER_EPS = 1e-3


def pixel_loss(kind: str, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    if kind == "l1":
        return (sr - hr).abs().mean()
    if kind == "charbonnier":
        return torch.sqrt((sr - hr) ** 2 + CHARBONNIER_EPS**2).mean()
    raise ValueError(f"unknown pixel loss {kind!r}")


def discriminator_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """real, fake: D's logits (N, 1, h, w) on HR and on SR images."""
    if kind == "relativistic":
        return _bce(real - fake.mean(), True) + _bce(fake - real.mean(), False)
    return gan_losses.discriminator_loss(kind, real, fake)


def generator_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """G's adversarial loss; `real` (D on HR, no gradient needed) is used by the relativistic loss."""
    if kind == "relativistic":
        return _bce(real - fake.mean(), False) + _bce(fake - real.mean(), True)
    return gan_losses.generator_loss(kind, fake)


def feature_loss(fake: list[torch.Tensor], real: list[torch.Tensor]) -> torch.Tensor:
    """Mean over D's layers of the L1 distance between activations on SR and (detached) HR."""
    return torch.stack([(f - r.detach()).abs().mean() for f, r in zip(fake, real, strict=True)]).mean()


def _bce(logits: torch.Tensor, target_real: bool) -> torch.Tensor:
    target = torch.ones_like(logits) if target_real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)
