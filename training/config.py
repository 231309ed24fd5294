"""The training job's configuration: one flat, typed dataclass read from TOML plus `--set` overrides.

Flat on purpose: every key can be overridden as `--set key=value`, and an error names the key.
Keys left unset (None) take the defaults of the chosen loss (see LOSS_DEFAULTS) when resolved.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOSSES = ("minimax", "nonsaturating", "wgan", "wgan-gp", "hinge")
MODELS = ("mlp", "dcgan", "style")
TOY_DATA = ("ring8", "grid25")
UPSAMPLE_MODES = ("nearest", "transposed")
BAD_FILE_POLICIES = ("skip", "error")
DEVICES = ("auto", "cpu", "cuda")
OPTIMIZERS = ("adam", "rmsprop")
LR_SCHEDULES = ("constant", "linear")


class ConfigError(ValueError):
    """A configuration problem; the message names the offending key."""


# A conditional G's accuracy is judged on this many times the samples FD uses: near 99 % its
# standard error falls from 0.26 to 0.08 points on digits (1,438 -> 14,380 samples), below the
# differences it compares.
ACCURACY_DRAWS = 10


@dataclass
class TrainConfig:
    # --- run ---
    name: str = "run"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    steps: int = 2000  # generator steps; each has `d_steps` discriminator steps before it
    batch_size: int = 64  # global batch; split evenly across DDP processes
    log_every: int = 50
    sample_every: int = 500
    eval_every: int = 1000  # 0: evaluate at the end only
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    # --- data ---
    data: str = "ring8"  # ring8 | grid25 | digits | folder:PATH
    resolution: int = 32  # image side in pixels (a power of two for dcgan and style)
    channels: int = 1  # folder data: 1 = grayscale, 3 = RGB (digits is always 1)
    conditional: bool = False  # class-conditional G and projection D
    bad_files: str = "skip"  # folder data: skip unreadable files (listed) or stop with an error
    toy_radius: float = 2.0  # ring8 radius (1 or 2 in the literature)
    heldout_fraction: float = 0.2  # fixed held-out split for evaluation (image data)
    # --- model ---
    model: str = "mlp"  # mlp | dcgan | style
    latent_dim: int = 64
    g_width: int = 64  # mlp: hidden units; dcgan, style: channels at full resolution
    d_width: int = 64
    channel_max: int = 128  # style: at most this many channels (they double towards 4x4)
    mlp_layers: int = 3  # hidden layers of the mlp G and D
    embed_dim: int = 32  # label embedding size in a conditional G
    upsample: str = "nearest"  # dcgan G: nearest upsample + conv, or transposed conv
    spectral_norm: bool = False  # spectral norm on every D layer
    w_dim: int = 128  # style: the style vector w
    mapping_layers: int = 4  # style: fully connected layers of the mapping network z -> w
    mapping_lr_mul: float = 0.01  # style: learning-rate multiplier of the mapping network
    style_mixing: float = 0.9  # style: share of batches whose ws switch to a second z's at a random layer
    mbstd_group: int = 4  # style D: minibatch standard deviation over groups of this size (0 = off)
    # --- loss and stabilizers ---
    loss: str = "nonsaturating"
    gp_lambda: float = 10.0  # wgan-gp gradient penalty weight
    r1_gamma: float = 0.0  # R1 penalty on real data (0 = off), any loss
    r1_every: int = 1  # lazy R1: every this many D steps, weighted by it (StyleGAN2 uses 16)
    clip_value: float = 0.01  # wgan critic weight clipping
    label_smoothing: float = 0.0  # one-sided: real target becomes 1 - s (minimax/nonsaturating)
    instance_noise: float = 0.0  # std of Gaussian noise on D's inputs at step 0
    instance_noise_anneal_steps: int = 0  # linear decay to 0 over this many steps (0: constant)
    # --- optimisation (None: the loss's default, see LOSS_DEFAULTS) ---
    optimizer: str | None = None  # adam | rmsprop
    g_lr: float | None = None
    d_lr: float | None = None
    beta1: float | None = None
    beta2: float | None = None
    d_steps: int | None = None
    grad_clip: float = 0.0  # max gradient norm for G and D (0 = off)
    lr_schedule: str = "constant"  # constant | linear (decay G's and D's rates to 0 at the last step)
    lr_decay_start: float = 0.5  # linear: fraction of the steps after which the decay begins
    ema_decay: float = 0.999  # EMA of G's weights (0 = off)
    ema_start: int = 0  # steps before the EMA starts averaging (it copies G until then)
    ema_rampup: float = 0.05  # the EMA's half-life is at most this times the steps done (0 = off)
    # batches of G's own samples that set the EMA G's BatchNorm statistics before it is sampled,
    # evaluated or saved (standing statistics; 0 = keep the raw G's)
    standing_batches: int = 16
    # --- evaluation and training health ---
    eval_samples: int = 2500  # toy data; image data uses the size of the training split
    classifier_epochs: int = 20  # the evaluation classifier (trained once per dataset, cached)
    accuracy_draws: int = ACCURACY_DRAWS  # labelled images: accuracy on this many times the training split
    cache_dir: str = ""  # "" = $GAN_CACHE_DIR or ~/.cache/gan-serving
    health_window: int = 20  # logged points the health checks look back over

    def resolved(self) -> TrainConfig:
        """A copy with every loss-dependent default filled in."""
        defaults = LOSS_DEFAULTS[self.loss]
        values = {k: (v if v is not None else defaults.get(k)) for k, v in self.to_dict().items()}
        return TrainConfig.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @staticmethod
    def from_dict(values: dict[str, Any]) -> TrainConfig:
        return config_from_values(TrainConfig, values)

    def validate(self) -> None:
        check_choice("loss", self.loss, LOSSES)
        check_choice("model", self.model, MODELS)
        check_choice("upsample", self.upsample, UPSAMPLE_MODES)
        check_choice("bad_files", self.bad_files, BAD_FILE_POLICIES)
        check_choice("device", self.device, DEVICES)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if not 0 <= self.lr_decay_start < 1:
            raise ConfigError(f"lr_decay_start: must be in [0, 1), got {self.lr_decay_start}")
        if self.optimizer is not None:
            check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if not (self.data in (*TOY_DATA, "digits") or self.data.startswith("folder:")):
            raise ConfigError(
                f"data: {self.data!r} is not one of ring8, grid25, digits, folder:PATH "
                "(sr_skimage and sr_folder:PATH are for super-resolution recipes)"
            )
        if self.data == "folder:":
            raise ConfigError("data: folder: needs a path, e.g. folder:/data/faces")
        for key in ("steps", "batch_size", "log_every", "sample_every", "checkpoint_every"):
            check_positive(key, getattr(self, key))
        for key in ("latent_dim", "g_width", "d_width", "mlp_layers", "embed_dim", "r1_every"):
            check_positive(key, getattr(self, key))
        for key in ("channel_max", "w_dim", "mapping_layers"):
            check_positive(key, getattr(self, key))
        for key in (
            "keep_checkpoints",
            "eval_samples",
            "classifier_epochs",
            "accuracy_draws",
            "health_window",
        ):
            check_positive(key, getattr(self, key))
        if self.eval_every < 0:
            raise ConfigError("eval_every: must be >= 0 (0 = evaluate at the end only)")
        if self.d_steps is not None:
            check_positive("d_steps", self.d_steps)
        for key in ("g_lr", "d_lr"):
            value = getattr(self, key)
            if value is not None and not (0 < value < 1):
                raise ConfigError(f"{key}: learning rate must be in (0, 1), got {value}")
        for key in ("beta1", "beta2"):
            value = getattr(self, key)
            if value is not None and not (0 <= value < 1):
                raise ConfigError(f"{key}: must be in [0, 1), got {value}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay: must be in [0, 1), got {self.ema_decay}")
        if not 0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"label_smoothing: must be in [0, 0.5), got {self.label_smoothing}")
        if self.label_smoothing > 0 and self.loss not in ("minimax", "nonsaturating"):
            # hinge and Wasserstein losses have no target probability to smooth: refused, not ignored
            raise ConfigError(
                f"label_smoothing: only the minimax and nonsaturating losses have a real target to "
                f"smooth; loss {self.loss} would ignore it (set label_smoothing = 0)"
            )
        if not 0 < self.heldout_fraction < 0.9:
            raise ConfigError(f"heldout_fraction: must be in (0, 0.9), got {self.heldout_fraction}")
        if not 0 < self.mapping_lr_mul <= 1:
            raise ConfigError(f"mapping_lr_mul: must be in (0, 1], got {self.mapping_lr_mul}")
        if not 0 <= self.style_mixing <= 1:
            raise ConfigError(f"style_mixing: must be in [0, 1], got {self.style_mixing}")
        if self.mbstd_group < 0:
            raise ConfigError(f"mbstd_group: must be >= 0 (0 = off), got {self.mbstd_group}")
        if self.model == "style" and self.mbstd_group and self.batch_size % self.mbstd_group:
            raise ConfigError(
                f"mbstd_group: batch_size {self.batch_size} is not a multiple of {self.mbstd_group}, "
                "so real and generated images would share a group"
            )
        non_negative = ("gp_lambda", "r1_gamma", "clip_value", "instance_noise", "grad_clip", "ema_rampup")
        for key in (*non_negative, "instance_noise_anneal_steps", "ema_start", "standing_batches"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key}: must be >= 0, got {getattr(self, key)}")
        if self.toy_radius <= 0:
            raise ConfigError(f"toy_radius: must be > 0, got {self.toy_radius}")
        if self.channels not in (1, 3):
            raise ConfigError(f"channels: must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        if self.resolution < 8:
            raise ConfigError(f"resolution: must be >= 8, got {self.resolution}")
        if self.model != "mlp" and (self.resolution & (self.resolution - 1)) != 0:
            raise ConfigError(f"resolution: {self.model} needs a power of two, got {self.resolution}")
        if self.model != "mlp" and self.data in TOY_DATA:
            raise ConfigError(f"model: {self.model} generates images; use mlp for {self.data}")
        if self.data in TOY_DATA and self.conditional:
            raise ConfigError(f"conditional: {self.data} has no class labels")


# Defaults each loss is known to train well with (Goodfellow 2014, Radford 2015, Arjovsky 2017,
# Gulrajani 2017, Miyato 2018 / Zhang 2019 for hinge with TTUR).
LOSS_DEFAULTS: dict[str, dict[str, Any]] = {
    "minimax": dict(optimizer="adam", g_lr=2e-4, d_lr=2e-4, beta1=0.5, beta2=0.999, d_steps=1),
    "nonsaturating": dict(optimizer="adam", g_lr=2e-4, d_lr=2e-4, beta1=0.5, beta2=0.999, d_steps=1),
    "wgan": dict(optimizer="rmsprop", g_lr=5e-5, d_lr=5e-5, beta1=0.0, beta2=0.0, d_steps=5),
    "wgan-gp": dict(optimizer="adam", g_lr=1e-4, d_lr=1e-4, beta1=0.0, beta2=0.9, d_steps=5),
    "hinge": dict(optimizer="adam", g_lr=1e-4, d_lr=4e-4, beta1=0.0, beta2=0.9, d_steps=1),
}


C = typing.TypeVar("C")


def config_from_values(config_type: type[C], values: dict[str, Any]) -> C:
    """Build and validate a config dataclass; an unknown key or a wrong type names the key."""
    fields = {f.name for f in dataclasses.fields(config_type)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(config_type)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"unknown config key {key!r}{_suggest(key, fields)}")
        kwargs[key] = _coerce(key, value, hints[key])
    cfg = config_type(**kwargs)
    cfg.validate()  # type: ignore[attr-defined]
    return cfg


def is_super_resolution(values: dict[str, Any]) -> bool:
    """SR recipes are told apart by their data (`sr_skimage`, `sr_folder:PATH`)."""
    return str(values.get("data", "")).startswith("sr_")


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a GAN recipe (TOML, or defaults), apply `key=value` overrides, validate."""
    return TrainConfig.from_dict(read_config_values(path, overrides))


def read_config_values(path: str | Path | None, overrides: list[str] | None = None) -> dict[str, Any]:
    """The raw key/value pairs of a TOML recipe with `key=value` overrides applied."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            values = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        for key, value in values.items():
            if isinstance(value, dict):
                raise ConfigError(f"{path}: [{key}] tables are not used; write flat keys (e.g. `loss = ...`)")
    for item in overrides or []:
        key, value = parse_override(item)
        values[key] = value
    return values


def parse_override(item: str) -> tuple[str, Any]:
    """`key=value` with the value read as a TOML literal (numbers, booleans), else a string."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value")
    key, raw = (part.strip() for part in item.split("=", 1))
    if not key:
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    allowed = _allowed_types(annotation)
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(f"{key}: a value is required")
    if isinstance(value, bool):
        if bool in allowed:
            return value
        raise ConfigError(f"{key}: expected {_type_names(allowed)}, got a boolean ({value})")
    if float in allowed and isinstance(value, int | float):
        if not math.isfinite(float(value)):
            raise ConfigError(f"{key}: must be a finite number, got {value}")
        return float(value)
    for expected in allowed:
        if expected is not type(None) and isinstance(value, expected):
            return value
    raise ConfigError(f"{key}: expected {_type_names(allowed)}, got {value!r}")


def _allowed_types(annotation: Any) -> tuple[type, ...]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return tuple(typing.get_args(annotation))
    origin = typing.get_origin(annotation)
    return (origin,) if origin is not None else (annotation,)


def _type_names(allowed: tuple[type, ...]) -> str:
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    return " or ".join(names.get(t, t.__name__) for t in allowed if t is not type(None))


def check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}")


def check_positive(key: str, value: int) -> None:
    if value <= 0:
        raise ConfigError(f"{key}: must be > 0, got {value}")


def _suggest(key: str, known: typing.Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def dump_toml(values: dict[str, Any]) -> str:
    """Flat TOML for the resolved config (unset keys are omitted), readable back by load_config."""
    lines = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        elif isinstance(value, float):
            text = repr(value)
        else:
            text = str(value)
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"
