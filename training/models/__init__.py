"""Network registry: build G and D from (kind, constructor arguments), load a saved generator.

Export imports this module, never the training loop: a checkpoint holds the generator's kind and
its own constructor arguments, so the network can be rebuilt exactly.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.checkpoint import atomic_save
from training.models.dcgan import (
    DCGANDiscriminator,
    DCGANDiscriminatorConfig,
    DCGANGenerator,
    DCGANGeneratorConfig,
)
from training.models.mlp import (
    MLPDiscriminator,
    MLPDiscriminatorConfig,
    MLPGenerator,
    MLPGeneratorConfig,
)
from training.models.srresnet import (
    PatchDiscriminator,
    PatchDiscriminatorConfig,
    SRResNetConfig,
    SRResNetGenerator,
)
from training.models.style import (
    StyleDiscriminator,
    StyleDiscriminatorConfig,
    StyleGenerator,
    StyleGeneratorConfig,
)

GENERATORS: dict[str, tuple[type[nn.Module], type]] = {
    "mlp": (MLPGenerator, MLPGeneratorConfig),
    "dcgan": (DCGANGenerator, DCGANGeneratorConfig),
    "style": (StyleGenerator, StyleGeneratorConfig),
    "srresnet": (SRResNetGenerator, SRResNetConfig),
}
DISCRIMINATORS: dict[str, tuple[type[nn.Module], type]] = {
    "mlp": (MLPDiscriminator, MLPDiscriminatorConfig),
    "dcgan": (DCGANDiscriminator, DCGANDiscriminatorConfig),
    "style": (StyleDiscriminator, StyleDiscriminatorConfig),
    "patch": (PatchDiscriminator, PatchDiscriminatorConfig),
}
GENERATOR_FORMAT = "gan-serving/generator"
GENERATOR_FORMAT_VERSION = 1


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_from_dict(config_type: type, values: dict[str, Any]) -> Any:
    """Rebuild a network config; tuples come back from JSON/pickle as lists."""
    known = {f.name: f for f in dataclasses.fields(config_type)}
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"{config_type.__name__}: unknown arguments {sorted(unknown)}")
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return config_type(**fixed)


def build_generator(kind: str, config: dict[str, Any]) -> nn.Module:
    if kind not in GENERATORS:
        raise ValueError(f"unknown generator kind {kind!r}; known: {', '.join(GENERATORS)}")
    cls, cfg_type = GENERATORS[kind]
    return cls(config_from_dict(cfg_type, config))


def build_discriminator(kind: str, config: dict[str, Any]) -> nn.Module:
    if kind not in DISCRIMINATORS:
        raise ValueError(f"unknown discriminator kind {kind!r}; known: {', '.join(DISCRIMINATORS)}")
    cls, cfg_type = DISCRIMINATORS[kind]
    return cls(config_from_dict(cfg_type, config))


def save_generator_file(
    path: str | Path,
    generator: nn.Module,
    kind: str,
    ema: bool,
    data: dict[str, Any],
    training: dict[str, Any],
    quality: dict[str, Any],
) -> None:
    """Write `generator.pt`, the file export reads: G's kind, constructor arguments and weights,
    what it was trained on and how, and its quality metrics (scalars only)."""
    payload = {
        "format": GENERATOR_FORMAT,
        "format_version": GENERATOR_FORMAT_VERSION,
        "kind": kind,
        "config": config_to_dict(generator.config),
        "state_dict": generator.state_dict(),
        "weights": "ema" if ema else "raw",
        "data": data,
        "training": training,
        "metrics": _scalar_metrics(quality),
    }
    atomic_save(payload, Path(path))


def record_metrics(path: str | Path, quality: dict[str, Any], scored: dict[str, Any] | None = None) -> None:
    """Replace `generator.pt`'s metrics with a new evaluation's (the step it was trained to stays),
    and the data summary's lists of scored images with `scored` (an upscaler's validation_images
    and test_images, which can be newer than its training); the weights, what it was trained on
    and everything else are kept as they are."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if payload.get("format") != GENERATOR_FORMAT:
        raise ValueError(f"{path}: not a generator file (format {payload.get('format')!r})")
    step = (payload.get("metrics") or {}).get("step")
    payload["metrics"] = _scalar_metrics(quality) | ({"step": step} if step is not None else {})
    if scored is not None:
        payload["data"] = {**payload["data"], **scored}
    atomic_save(payload, Path(path))


def _scalar_metrics(quality: dict[str, Any]) -> dict[str, Any]:
    """The scalars of an evaluation; a [low, high] interval becomes KEY_low and KEY_high, so
    manifests (which hold scalars) keep it. Per-class and per-image tables stay in eval.json."""
    out: dict[str, Any] = {}
    for key, value in quality.items():
        if isinstance(value, int | float | str):
            out[key] = value
        elif key.endswith("_ci95") and isinstance(value, list | tuple) and len(value) == 2:
            out[f"{key}_low"], out[f"{key}_high"] = float(value[0]), float(value[1])
    return out


def load_generator(path: str | Path, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load `generator.pt`: returns G in eval mode and the file's metadata (data, training, metrics)."""
    payload = torch.load(Path(path), map_location=device, weights_only=True)
    if payload.get("format") != GENERATOR_FORMAT:
        raise ValueError(f"{path}: not a generator file (format {payload.get('format')!r})")
    if payload.get("format_version") != GENERATOR_FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported generator format_version {payload.get('format_version')}")
    generator = build_generator(payload["kind"], payload["config"])
    generator.load_state_dict(payload["state_dict"])
    generator.eval()
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return generator, meta
