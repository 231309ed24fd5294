"""Exponential moving average of G's weights (Yazici et al. 2019): the EMA G is what gets served;
and the BatchNorm statistics that go with its weights (BigGAN's standing statistics)."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


class EMA:
    """decay: the per-step decay once warmed up. start: steps during which the EMA copies G, so
    early noisy weights do not linger. rampup (StyleGAN2-ADA's ema_rampup): the half-life of the
    average is at most `rampup` times the steps done so far, so a short run's average is not
    dominated by its first steps; 0 = off."""

    def __init__(self, model: nn.Module, decay: float, start: int = 0, rampup: float = 0.0) -> None:
        self.decay, self.start, self.rampup = decay, start, rampup
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def decay_at(self, step: int) -> float:
        if step < self.start:
            return 0.0
        if self.rampup <= 0:
            return self.decay
        half_life = math.log(0.5) / math.log(self.decay)  # in steps
        return 0.5 ** (1.0 / min(half_life, self.rampup * (step + 1)))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        decay = self.decay_at(step)
        for ema_p, p in zip(self.model.parameters(), model.parameters(), strict=True):
            ema_p.lerp_(p.detach(), 1.0 - decay)
        # Buffers (BatchNorm running statistics, a style G's running mean of w) are copied.
        for ema_b, b in zip(self.model.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)


STANDING_BATCH = 64
STANDING_SEED = 4321  # the same latents every time: samples and evaluations stay comparable


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def standing_statistics(generator: nn.Module, batches: int) -> bool:
    """Recompute G's BatchNorm running statistics for its own weights (Brock et al. 2019,
    "standing statistics"): the EMA copies the raw G's statistics, which belong to other weights.
    G runs in train mode on `batches` batches of random latents (balanced labels when
    conditional); each BatchNorm keeps the plain average over them (momentum None). The global
    RNG is left as it was. False when G has no BatchNorm (nothing to do)."""
    norms = batch_norms(generator)
    if not norms or batches <= 0:
        return False
    config: Any = getattr(generator, "config")  # noqa: B009  # our networks carry their config
    latent_dim, num_classes = int(config.latent_dim), int(getattr(config, "num_classes", 0))
    device = next(generator.parameters()).device
    momenta = [bn.momentum for bn in norms]
    was_training = generator.training
    rng = torch.Generator().manual_seed(STANDING_SEED)
    try:
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None  # a cumulative average over the batches
        generator.train()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for i in range(batches):
                z = torch.randn((STANDING_BATCH, latent_dim), generator=rng).to(device)
                labels = None
                if num_classes > 0:
                    labels = (torch.arange(STANDING_BATCH, device=device) + i * STANDING_BATCH) % num_classes
                generator(z, labels)
    finally:
        for bn, momentum in zip(norms, momenta, strict=True):
            bn.momentum = momentum
        generator.train(was_training)
    return True
