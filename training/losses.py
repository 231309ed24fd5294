"""GAN objectives on D's raw outputs (logits for minimax/nonsaturating, critic scores otherwise).

Each returns a scalar to *minimise*. With D(x) = sigmoid(logit):
  minimax        D: -log D(x) - log(1 - D(G(z)))      G:  log(1 - D(G(z)))   (saturates)
  nonsaturating  D: same as minimax                    G: -log D(G(z))
  wgan, wgan-gp  D: E[f(G(z))] - E[f(x)]               G: -E[f(G(z))]
  hinge          D: E[relu(1 - f(x))] + E[relu(1 + f(G(z)))]   G: -E[f(G(z))]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def discriminator_loss(
    kind: str, real: torch.Tensor, fake: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    if kind in ("minimax", "nonsaturating"):
        # BCE with target 1 - s for real (one-sided smoothing) and 0 for fake; softplus keeps it
        # finite for any logit: -log sigmoid(r) = softplus(-r), -log(1 - sigmoid(f)) = softplus(f).
        target = 1.0 - label_smoothing
        real_term = target * F.softplus(-real) + (1.0 - target) * F.softplus(real)
        return real_term.mean() + F.softplus(fake).mean()
    if kind in ("wgan", "wgan-gp"):
        return fake.mean() - real.mean()
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    raise ValueError(f"unknown loss {kind!r}")


def generator_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    if kind == "minimax":
        return -F.softplus(fake).mean()  # = mean log(1 - sigmoid(f))
    if kind == "nonsaturating":
        return F.softplus(-fake).mean()  # = mean -log sigmoid(f)
    if kind in ("wgan", "wgan-gp", "hinge"):
        return -fake.mean()
    raise ValueError(f"unknown loss {kind!r}")


def uses_probabilities(kind: str) -> bool:
    """True when D's output is a logit of P(real), so D(x) is reported as a probability."""
    return kind in ("minimax", "nonsaturating")
