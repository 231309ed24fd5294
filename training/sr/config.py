"""The super-resolution recipe: one flat, typed dataclass, read and overridden like TrainConfig.

A recipe is a super-resolution one when its `data` is `sr_skimage` or `sr_folder:PATH`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from training.config import (
    BAD_FILE_POLICIES,
    DEVICES,
    LR_SCHEDULES,
    ConfigError,
    TrainConfig,
    check_choice,
    check_positive,
    config_from_values,
    is_super_resolution,
    read_config_values,
)

SCALES = (2, 4)
STAGES = ("sr_pixel", "srgan")
PIXEL_LOSSES = ("l1", "charbonnier")
ADVERSARIAL_LOSSES = ("nonsaturating", "hinge", "relativistic")


@dataclass
class SRConfig:
    # --- run ---
    name: str = "sr"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    steps: int = 5000
    batch_size: int = 16
    log_every: int = 100
    sample_every: int = 1000
    eval_every: int = 0  # 0: evaluate at the end only
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    # --- data ---
    data: str = "sr_skimage"  # sr_skimage | sr_folder:PATH (high-resolution images)
    scale: int = 4  # 2 | 4
    patch_size: int = 96  # HR crop side; the LR input is patch_size / scale
    bad_files: str = "skip"  # unreadable or too-small files: skip (listed) or stop with an error
    heldout_fraction: float = 0.2  # sr_folder: share held out, halved into validation and test images
    max_memory_mb: int = 4096  # decoded HR images are kept in memory; refuse folders larger than this
    # optional degradations of the LR input, each drawn per sample (0 = off)
    degrade_blur: float = 0.0  # max std (HR pixels) of a Gaussian blur before downsampling
    degrade_noise: float = 0.0  # max std (in [0, 1] units) of Gaussian noise on the LR image
    degrade_jpeg: int = 0  # min JPEG quality (quality drawn from [degrade_jpeg, 95])
    # share of training crops given a colour augmentation: saturation scaled by a gain drawn from
    # [1, 3] about the luma (clipped), then the channels in a random order (0 = off)
    colour_augment: float = 0.0
    # --- model ---
    g_width: int = 64  # SRResNet feature channels
    g_blocks: int = 16  # residual blocks
    d_width: int = 32  # patch discriminator's first-layer channels
    spectral_norm: bool = True  # on every discriminator layer
    # --- stages and losses ---
    stage: str = "sr_pixel"  # sr_pixel (stage 1) | srgan (stage 2, starts from init_from)
    init_from: str = ""  # srgan: a stage-1 run directory or its generator.pt
    pixel_loss: str = "l1"  # l1 | charbonnier
    adversarial_loss: str = "relativistic"  # srgan: nonsaturating | hinge | relativistic
    pixel_weight: float = 1.0  # srgan: weight of the pixel loss
    feature_weight: float = 1.0  # srgan: weight of the feature loss (on D's features)
    adversarial_weight: float = 0.01  # srgan: weight of G's adversarial loss
    # --- optimisation ---
    g_lr: float = 2e-4
    d_lr: float = 2e-4
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 0.0  # max gradient norm for G and D (0 = off)
    lr_schedule: str = "linear"  # constant | linear
    lr_decay_start: float = 0.5
    ema_decay: float = 0.999  # EMA of G's weights (0 = off); the EMA G is evaluated and saved
    ema_start: int = 0
    ema_rampup: float = 0.05  # the EMA's half-life is at most this times the steps done (0 = off)
    # --- evaluation: full held-out images, tiled like the service does it ---
    eval_tile: int = 128  # LR tile side
    eval_overlap: int = 32  # LR pixels shared by neighbouring tiles
    eval_batch: int = 8  # tiles per forward pass
    eval_max_images: int = 0  # 0: every held-out image

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @staticmethod
    def from_dict(values: dict[str, Any]) -> SRConfig:
        return config_from_values(SRConfig, values)

    def validate(self) -> None:
        check_choice("device", self.device, DEVICES)
        check_choice("bad_files", self.bad_files, BAD_FILE_POLICIES)
        check_choice("stage", self.stage, STAGES)
        check_choice("pixel_loss", self.pixel_loss, PIXEL_LOSSES)
        check_choice("adversarial_loss", self.adversarial_loss, ADVERSARIAL_LOSSES)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if self.data != "sr_skimage" and not self.data.startswith("sr_folder:"):
            raise ConfigError(f"data: {self.data!r} is not one of sr_skimage, sr_folder:PATH")
        if self.data == "sr_folder:":
            raise ConfigError("data: sr_folder: needs a path, e.g. sr_folder:/data/photos")
        if self.scale not in SCALES:
            raise ConfigError(f"scale: must be one of {', '.join(map(str, SCALES))}, got {self.scale}")
        if self.patch_size % self.scale or self.patch_size // self.scale < 8:
            raise ConfigError(
                f"patch_size: must be a multiple of scale ({self.scale}) with an LR side of at least "
                f"8 pixels, got {self.patch_size}"
            )
        for key in ("steps", "batch_size", "log_every", "sample_every", "checkpoint_every"):
            check_positive(key, getattr(self, key))
        for key in ("keep_checkpoints", "g_width", "g_blocks", "d_width", "max_memory_mb"):
            check_positive(key, getattr(self, key))
        for key in ("eval_tile", "eval_batch"):
            check_positive(key, getattr(self, key))
        if self.eval_tile < 8:
            raise ConfigError(f"eval_tile: must be >= 8, got {self.eval_tile}")
        if not 0 <= self.eval_overlap < self.eval_tile:
            raise ConfigError(f"eval_overlap: must be in [0, eval_tile), got {self.eval_overlap}")
        for key in ("eval_every", "eval_max_images", "ema_start", "ema_rampup"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key}: must be >= 0, got {getattr(self, key)}")
        for key in ("g_lr", "d_lr"):
            if not 0 < getattr(self, key) < 1:
                raise ConfigError(f"{key}: learning rate must be in (0, 1), got {getattr(self, key)}")
        for key in ("beta1", "beta2", "ema_decay", "lr_decay_start"):
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be in [0, 1), got {getattr(self, key)}")
        if not 0 < self.heldout_fraction < 0.9:
            raise ConfigError(f"heldout_fraction: must be in (0, 0.9), got {self.heldout_fraction}")
        if not 0 <= self.degrade_blur <= 4:
            raise ConfigError(f"degrade_blur: max std must be in [0, 4] HR pixels, got {self.degrade_blur}")
        for key in ("pixel_weight", "feature_weight", "adversarial_weight", "grad_clip"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key}: must be >= 0, got {getattr(self, key)}")
        if not 0 <= self.colour_augment <= 1:
            raise ConfigError(f"colour_augment: must be a share in [0, 1], got {self.colour_augment}")
        if not 0 <= self.degrade_noise <= 0.5:
            raise ConfigError(f"degrade_noise: must be in [0, 0.5], got {self.degrade_noise}")
        if self.degrade_jpeg and not 1 <= self.degrade_jpeg <= 95:
            raise ConfigError(
                f"degrade_jpeg: minimum quality must be in [1, 95] (0 = off), got {self.degrade_jpeg}"
            )
        if self.stage == "srgan" and not self.init_from:
            raise ConfigError(
                "init_from: the srgan stage starts from a trained sr_pixel run; set init_from to its "
                "run directory or generator.pt"
            )


def load_any_config(path: Any, overrides: list[str] | None = None) -> TrainConfig | SRConfig:
    """A GAN recipe or, when its data is `sr_*`, a super-resolution one."""
    values = read_config_values(path, overrides)
    if is_super_resolution(values):
        return SRConfig.from_dict(values)
    return TrainConfig.from_dict(values)
