"""Exponential moving average of G's weights (Yazici et al. 2019): the EMA G is what gets served."""

from __future__ import annotations

import copy
import math

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
