"""What a GAN run trains and a checkpoint holds: G and D (DDP-wrapped under torchrun), the EMA of
G, the two optimisers, and the run's two random streams (data order, noise), one pair per rank.
Built from the training config, restored from a checkpoint on resume, and saved into the next;
training/train.py runs these as its stages.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from training.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.data.base import DataInfo
from training.distributed import DistInfo, gather_to_main, unwrap
from training.ema import EMA
from training.health import HealthMonitor
from training.models import build_discriminator, build_generator, config_to_dict
from training.models.dcgan import DCGANDiscriminatorConfig, DCGANGeneratorConfig
from training.models.mlp import MLPDiscriminatorConfig, MLPGeneratorConfig
from training.models.style import StyleDiscriminatorConfig, StyleGeneratorConfig
from training.runtime import DATA_STREAM, NOISE_STREAM, RunError, stream_seed


def network_configs(cfg: TrainConfig, info: DataInfo) -> tuple[Any, Any]:
    """G's and D's constructor arguments from the training config and the data's shape."""
    num_classes = info.num_classes if cfg.conditional else 0
    if cfg.model == "mlp":
        return (
            MLPGeneratorConfig(
                latent_dim=cfg.latent_dim,
                out_shape=info.shape,
                hidden=cfg.g_width,
                layers=cfg.mlp_layers,
                num_classes=num_classes,
                embed_dim=cfg.embed_dim,
                output_activation="tanh" if info.kind == "image" else "none",
            ),
            MLPDiscriminatorConfig(
                in_shape=info.shape,
                hidden=cfg.d_width,
                layers=cfg.mlp_layers,
                num_classes=num_classes,
                spectral_norm=cfg.spectral_norm,
            ),
        )
    channels = info.shape[0]
    if cfg.model == "style":
        return (
            StyleGeneratorConfig(
                latent_dim=cfg.latent_dim,
                w_dim=cfg.w_dim,
                mapping_layers=cfg.mapping_layers,
                mapping_lr_mul=cfg.mapping_lr_mul,
                channels=channels,
                resolution=cfg.resolution,
                channel_base=cfg.g_width * cfg.resolution,
                channel_max=cfg.channel_max,
                num_classes=num_classes,
                embed_dim=cfg.embed_dim,
            ),
            StyleDiscriminatorConfig(
                channels=channels,
                resolution=cfg.resolution,
                channel_base=cfg.d_width * cfg.resolution,
                channel_max=cfg.channel_max,
                num_classes=num_classes,
                mbstd_group=cfg.mbstd_group,
            ),
        )
    return (
        DCGANGeneratorConfig(
            latent_dim=cfg.latent_dim,
            channels=channels,
            resolution=cfg.resolution,
            width=cfg.g_width,
            num_classes=num_classes,
            embed_dim=cfg.embed_dim,
            upsample=cfg.upsample,
        ),
        DCGANDiscriminatorConfig(
            channels=channels,
            resolution=cfg.resolution,
            width=cfg.d_width,
            num_classes=num_classes,
            spectral_norm=cfg.spectral_norm,
        ),
    )


def make_optimizer(cfg: TrainConfig, params: Any, lr: float) -> torch.optim.Optimizer:
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    assert cfg.beta1 is not None and cfg.beta2 is not None
    return torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, cfg.beta2))


@dataclass
class RandomStreams:
    """All randomness after model initialisation, per rank: the data order and the noise (latents,
    labels, instance noise, a style G's noise images and mixing). Checkpointed, so that a resumed
    run draws what an uninterrupted one would."""

    data: torch.Generator
    noise: torch.Generator

    @classmethod
    def seeded(cls, seed: int, rank: int) -> RandomStreams:
        return cls(
            torch.Generator().manual_seed(stream_seed(seed, rank, DATA_STREAM)),
            torch.Generator().manual_seed(stream_seed(seed, rank, NOISE_STREAM)),
        )

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {"data": self.data.get_state(), "noise": self.noise.get_state()}


@dataclass
class GAN:
    """G and D as trained (DDP-wrapped under torchrun), the EMA of G, and their optimisers."""

    G: nn.Module
    D: nn.Module
    ema: EMA | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    g_config: Any  # G's constructor arguments, stored in every checkpoint for export

    @property
    def G_plain(self) -> nn.Module:
        return unwrap(self.G)

    @property
    def D_plain(self) -> nn.Module:
        return unwrap(self.D)

    @property
    def served(self) -> nn.Module:
        """The weights users will get: the EMA G when there is one."""
        return self.ema.model if self.ema is not None else self.G_plain

    @property
    def num_classes(self) -> int:
        return int(self.g_config.num_classes)

    def distribute(self, device: torch.device, dist_info: DistInfo) -> None:
        """Under torchrun, G and D in DDP, which averages their gradients over the ranks."""
        if dist_info.enabled:
            self.G = DDP(self.G, device_ids=[device.index] if device.type == "cuda" else None)
            self.D = DDP(self.D, device_ids=[device.index] if device.type == "cuda" else None)


def build_gan(cfg: TrainConfig, info: DataInfo, device: torch.device) -> GAN:
    """G and D as the config and data make them, the EMA of G, and the optimisers."""
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    g_config, d_config = network_configs(cfg, info)
    G = build_generator(cfg.model, config_to_dict(g_config)).to(device)
    D = build_discriminator(cfg.model, config_to_dict(d_config)).to(device)
    ema = EMA(G, cfg.ema_decay, cfg.ema_start, cfg.ema_rampup) if cfg.ema_decay > 0 else None
    assert cfg.g_lr is not None and cfg.d_lr is not None
    opt_g = make_optimizer(cfg, G.parameters(), cfg.g_lr)
    opt_d = make_optimizer(cfg, D.parameters(), cfg.d_lr)
    return GAN(G, D, ema, opt_g, opt_d, g_config)


def resume_gan(
    path: Path, gan: GAN, streams: RandomStreams, seed: int, rank: int
) -> tuple[int, HealthMonitor]:
    """The checkpoint's weights, optimisers and this rank's random streams into `gan` and
    `streams`; returns its step and its health monitor. Call before `GAN.distribute`."""
    state = load_checkpoint(path)
    gan.G.load_state_dict(state["generator"])
    gan.D.load_state_dict(state["discriminator"])
    if gan.ema is not None:
        gan.ema.model.load_state_dict(state["generator_ema"])
    gan.opt_g.load_state_dict(state["opt_g"])
    gan.opt_d.load_state_dict(state["opt_d"])
    rng = state["rng"][rank] if rank < len(state["rng"]) else None
    if rng is not None:
        streams.data.set_state(rng["data"])
        streams.noise.set_state(rng["noise"])
    else:  # a checkpoint saved on Ctrl-C under DDP holds rank 0's streams only
        streams.data.manual_seed(stream_seed(seed, rank, DATA_STREAM, state["step"]))
        streams.noise.manual_seed(stream_seed(seed, rank, NOISE_STREAM, state["step"]))
    return state["step"], HealthMonitor(**state["health"])


def checkpoint_state(
    gan: GAN,
    streams: RandomStreams,
    monitor: HealthMonitor,
    info: DataInfo,
    dist_info: DistInfo,
    step: int,
    all_ranks: bool,
) -> dict[str, Any]:
    """A checkpoint's contents past its header (training/loop.py writes the header)."""
    if all_ranks:  # every rank's random streams, so that each rank resumes its own
        rng_states = gather_to_main(streams.snapshot(), dist_info)
        if dist_info.enabled:
            _check_replicas(gan.G_plain, gan.D_plain, dist_info, step)
    else:  # Ctrl-C: no collectives here, the other ranks may be gone
        rng_states = [streams.snapshot()]
    return {
        "generator": gan.G_plain.state_dict(),
        "discriminator": gan.D_plain.state_dict(),
        "generator_ema": gan.ema.model.state_dict() if gan.ema is not None else None,
        "opt_g": gan.opt_g.state_dict(),
        "opt_d": gan.opt_d.state_dict(),
        "rng": rng_states,
        "health": dataclasses.asdict(monitor),
        "data": info.summary(),
    }


def _check_replicas(G: nn.Module, D: nn.Module, dist_info: DistInfo, step: int) -> None:
    """DDP keeps every process's G and D identical; a mismatch means the gradients were not
    synchronised, and the checkpoint would hold one process's drifted copy."""
    with torch.no_grad():
        sums = [float(sum(p.double().sum() for p in m.parameters())) for m in (G, D)]
    everyone = gather_to_main(sums, dist_info)
    if any(
        not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
        for s in everyone
        for a, b in zip(s, sums, strict=True)
    ):
        raise RunError(f"step {step}: DDP replicas diverged (parameter sums per rank: {everyone})")
