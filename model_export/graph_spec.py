"""One published graph's description (`GraphSpec`: what the exporter, parity and the manifest need
besides the module), and what every generator's graphs share, native and style alike: the float
image to uint8 pixels step, the parity latents, the manifest's generator section, the image shape
and value range read from a source. model_export.pixel_graphs and model_export.style_graphs build
their specs from these.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from model_export.errors import ExportError
from model_export.source import Source
from model_repository.manifest import MODEL_FILE

# Upper bounds for the dynamic axes: torch.export needs them finite; far above any real request.
MAX_BATCH = 4096
MAX_SIDE = 16384
# Parity is measured at these batch sizes.
PARITY_BATCHES = (1, 3, 17)


def to_pixels(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """(N, C, H, W) float in [low, high] -> (N, H, W, C) uint8; out-of-range values saturate."""
    x = ((x - low) * (255.0 / (high - low))).round().clamp(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1)


# (generator copy at the export precision, that precision, pixels?) -> the module to export
Wrap = Callable[[nn.Module, torch.dtype, bool], nn.Module]


@dataclass
class GraphSpec:
    """One published graph: what the exporter needs besides the module, the inputs parity is
    measured on, and what the manifest says about the IO."""

    input_names: list[str]
    output_name: str
    example_inputs: tuple[torch.Tensor, ...]
    dynamic_shapes: dict[str, Any]  # by forward()'s parameter names (a tuple for *args)
    manifest_inputs: list[dict[str, Any]]
    manifest_outputs: list[dict[str, Any]]
    model_value_range: tuple[float, float]
    task_section: dict[str, Any]  # the manifest's "generator" or "upscaler" object
    wrap: Wrap
    parity_inputs: list[tuple[torch.Tensor, ...]]  # deterministic random inputs
    file: str = MODEL_FILE
    # True: the published graph returns uint8 pixels and a float twin is checked against PyTorch
    # first; False: the graph's float output is what is published (a style G's mapping).
    pixels: bool = True


def latent_cases(latent: int, num_classes: int, rng: torch.Generator) -> list[tuple[torch.Tensor, ...]]:
    """A generator's (or a style mapping's) parity inputs: z [, labels] at each of PARITY_BATCHES,
    drawn from rng. Also what an fp16 variant of a published version is measured on
    (model_export.variant), so both are measured on the same inputs."""
    cases: list[tuple[torch.Tensor, ...]] = []
    for n in PARITY_BATCHES:
        z = torch.randn((n, latent), generator=rng)
        cases.append((z, torch.randint(0, num_classes, (n,), generator=rng)) if num_classes else (z,))
    return cases


def generator_section(source: Source, latent: int, num_classes: int) -> dict[str, Any]:
    """The manifest's "generator" object, without a style generator's own part."""
    channels, height, width = image_shape(source)
    return {
        "latent_size": latent,
        "latent_distribution": "standard_normal",
        "classes": {"count": num_classes, "names": _class_names(source, num_classes)},
        "output": {"height": height, "width": width, "channels": channels},
    }


def image_shape(source: Source) -> tuple[int, int, int]:
    config = source.config
    if source.image_shape is not None:  # an adopted generator's, probed
        return source.image_shape
    if source.kind in ("dcgan", "style"):
        return int(config["channels"]), int(config["resolution"]), int(config["resolution"])
    out_shape = tuple(int(d) for d in config.get("out_shape", ()))
    if len(out_shape) != 3 or out_shape[0] not in (1, 3):
        raise ExportError(
            f"{source.path}: this {source.kind} generator makes {out_shape} tensors, not (1|3, H, W) "
            "images (a toy point generator?); only image generators can be exported for serving"
        )
    return out_shape


def _class_names(source: Source, num_classes: int) -> list[str]:
    names = [str(n) for n in source.data.get("class_names") or []]
    if len(names) == num_classes and len(set(names)) == num_classes and all(names):
        return names
    return [str(i) for i in range(num_classes)]


def value_range_of(source: Source) -> tuple[float, float]:
    found = source.data.get("value_range")
    if isinstance(found, list | tuple) and len(found) == 2:
        low, high = float(found[0]), float(found[1])
        if math.isfinite(low) and math.isfinite(high) and high > low:
            return low, high
    return -1.0, 1.0  # images are trained in [-1, 1] (tanh output) throughout this project
