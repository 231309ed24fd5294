"""Tiny generators with random weights, saved as real generator files, one per architecture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from model_export.export import ExportResult, export_source
from model_export.source import load_source
from tests.shared_build import built_once
from training.models import build_generator, save_generator_file
from training.models.style import StyleGenerator, SynthesisLayer

IMAGE_DATA = {"name": "test", "kind": "image", "value_range": [-1.0, 1.0], "skipped_files": 0}
SR_DATA = {"name": "test", "kind": "sr", "value_range": [0.0, 1.0], "channels": 3}

# name -> (kind, constructor arguments, data summary): every architecture and variant export handles.
ARCHITECTURES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "mlp-conditional": (
        "mlp",
        {
            "latent_dim": 8,
            "out_shape": [1, 8, 8],
            "hidden": 16,
            "layers": 2,
            "num_classes": 3,
            "embed_dim": 4,
            "output_activation": "tanh",
        },
        IMAGE_DATA | {"shape": [1, 8, 8], "class_names": ["cat", "dog", "owl"]},
    ),
    "dcgan-conditional": (
        "dcgan",
        {
            "latent_dim": 8,
            "channels": 3,
            "resolution": 8,
            "width": 4,
            "num_classes": 4,
            "embed_dim": 4,
            "upsample": "nearest",
        },
        IMAGE_DATA | {"shape": [3, 8, 8], "class_names": ["0", "1", "2", "3"]},
    ),
    "dcgan-transposed": (
        "dcgan",
        {"latent_dim": 8, "channels": 1, "resolution": 16, "width": 4, "upsample": "transposed"},
        IMAGE_DATA | {"shape": [1, 16, 16], "class_names": []},
    ),
    "style-conditional": (
        "style",
        {
            "latent_dim": 8,
            "w_dim": 16,
            "mapping_layers": 2,
            "channels": 3,
            "resolution": 16,
            "channel_base": 128,
            "channel_max": 16,
            "num_classes": 3,
            "embed_dim": 4,
        },
        IMAGE_DATA | {"shape": [3, 16, 16], "class_names": ["a", "b", "c"]},
    ),
    "style-8px": (
        "style",
        {
            "latent_dim": 4,
            "w_dim": 8,
            "mapping_layers": 1,
            "channels": 1,
            "resolution": 8,
            "channel_base": 32,
        },
        IMAGE_DATA | {"shape": [1, 8, 8], "class_names": []},
    ),
    "srresnet-x2": ("srresnet", {"scale": 2, "channels": 3, "width": 8, "blocks": 2}, SR_DATA),
    "srresnet-x4": ("srresnet", {"scale": 4, "channels": 3, "width": 8, "blocks": 1}, SR_DATA),
}


def randomize(generator: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights everywhere, including BatchNorm statistics, SRResNet's zero-initialised tail
    and a style G's noise strengths and mean style, so no layer is an identity that would hide an
    export mistake."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in generator.modules():
            if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2)  # type: ignore[union-attr]
                module.running_var.uniform_(0.5, 2.0)  # type: ignore[union-attr]
                module.weight.normal_(1, 0.2)
                module.bias.normal_(0, 0.2)
            if isinstance(module, SynthesisLayer):  # noise strengths start at 0
                module.noise_strength.normal_(0, 0.5)
        if isinstance(generator, StyleGenerator):
            generator.w_avg.normal_(0, 1)
            # A trained style G draws images near [-1, 1] (it has no tanh); random toRGB weights
            # give values up to +-10, where fp16's relative precision alone exceeds its tolerance.
            for torgb in generator.synthesis.torgbs:
                torgb.conv.weight.mul_(0.25)  # type: ignore[union-attr, operator]
        tail = getattr(generator, "tail", None)
        if isinstance(tail, nn.Conv2d):
            tail.weight.normal_(0, 0.05)
            tail.bias.normal_(0, 0.01)  # type: ignore[union-attr]
    return generator.eval()


def write_generator_file(path: Path, arch: str, ema: bool = True) -> Path:
    kind, config, data = ARCHITECTURES[arch]
    generator = randomize(build_generator(kind, config))
    task = "upscale" if kind == "srresnet" else "generate"
    training = {"task": task, "model": kind, "loss": "hinge", "steps": 10, "data": "test", "seed": 0}
    save_generator_file(path, generator, kind, ema, data, training, {"step": 10, "fd": 12.5})
    return path


@pytest.fixture(scope="session")
def generator_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One generator file per architecture, written once per run (tests.shared_build)."""

    def write(directory: Path) -> dict[str, Path]:
        return {arch: write_generator_file(directory / f"{arch}.pt", arch) for arch in ARCHITECTURES}

    return built_once(tmp_path_factory, "generators", write)


@pytest.fixture(scope="session")
def exported(
    generator_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, ExportResult]:
    """Every architecture exported (fp32, with model cards) into one repository, once per run
    and shared by the workers: read-only for tests, copy a version before changing it."""

    def export(repo: Path) -> dict[str, ExportResult]:
        return {arch: export_source(load_source(path), repo, arch) for arch, path in generator_files.items()}

    return built_once(tmp_path_factory, "exported", export)
