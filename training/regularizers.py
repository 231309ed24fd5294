"""Stabilizers that act on D's inputs or gradients: penalties, instance noise, weight clipping."""

from __future__ import annotations

import torch
from torch import nn


def input_gradient(scores: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """d(sum scores)/d(inputs), kept in the graph so a penalty on it can be backpropagated.

    scores: (N,) D outputs computed from inputs (N, ...) -> (N, ...) gradients.
    """
    (grad,) = torch.autograd.grad(scores.sum(), inputs, create_graph=True)
    return grad


def interpolate(real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random points on lines between real and fake samples (Gulrajani et al. 2017)."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(shape, generator=generator, device="cpu").to(real.device)
    return (eps * real + (1 - eps) * fake).requires_grad_(True)


def gradient_penalty(grad: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: E[(||grad||_2 - 1)^2]; grad (N, ...) of D at interpolates. Multiply by lambda."""
    norms = grad.flatten(1).norm(2, dim=1)
    return ((norms - 1.0) ** 2).mean()


def r1_penalty(grad: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): E[||grad||^2] at real data. Multiply by gamma / 2."""
    return grad.flatten(1).pow(2).sum(dim=1).mean()


def instance_noise_std(initial: float, anneal_steps: int, step: int) -> float:
    """Linearly annealed noise level (Sønderby et al. 2016); constant when anneal_steps is 0."""
    if initial <= 0:
        return 0.0
    if anneal_steps <= 0:
        return initial
    return initial * max(0.0, 1.0 - step / anneal_steps)


def add_instance_noise(x: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    if std <= 0:
        return x
    noise = torch.randn(x.shape, generator=generator, device="cpu").to(x.device)
    return x + std * noise


@torch.no_grad()
def clip_weights(module: nn.Module, value: float) -> None:
    """WGAN's crude Lipschitz constraint: clamp every critic parameter to [-value, value]."""
    for p in module.parameters():
        p.clamp_(-value, value)
