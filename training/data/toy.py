"""2-D mixtures of Gaussians for measuring mode collapse (VEEGAN, Srivastava et al. 2017; PacGAN)."""

from __future__ import annotations

import math

import torch

from training.data.base import DataInfo, Sampler


def ring_modes(count: int = 8, radius: float = 2.0) -> torch.Tensor:
    angles = torch.arange(count, dtype=torch.float64) * (2 * math.pi / count)
    return torch.stack([radius * torch.cos(angles), radius * torch.sin(angles)], dim=1).float()


def grid_modes(values: tuple[float, ...] = (-4.0, -2.0, 0.0, 2.0, 4.0)) -> torch.Tensor:
    v = torch.tensor(values)
    xs, ys = torch.meshgrid(v, v, indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], dim=1)


class MixtureSampler(Sampler):
    """Fresh samples every batch: uniform over modes, isotropic Gaussian around each."""

    def __init__(self, info: DataInfo) -> None:
        assert info.modes is not None
        self.info = info
        self.modes = info.modes

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, None]:
        which = torch.randint(0, self.modes.shape[0], (batch,), generator=generator)
        noise = torch.randn((batch, 2), generator=generator) * self.info.mode_std
        return self.modes[which] + noise, None


def toy_sampler(name: str, radius: float = 2.0) -> MixtureSampler:
    if name == "ring8":
        info = DataInfo("ring8", "toy", (2,), modes=ring_modes(8, radius), mode_std=0.02)
    elif name == "grid25":
        info = DataInfo("grid25", "toy", (2,), modes=grid_modes(), mode_std=0.05)
    else:
        raise ValueError(f"unknown toy data {name!r}")
    return MixtureSampler(info)
