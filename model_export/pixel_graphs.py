"""The exported graphs: the generator plus the cheap pre/post-processing that belongs in-graph.

Published graphs speak pixels. A generator takes z (N, latent) float32 [and labels (N,) int64] and
returns (N, H, W, C) uint8; an upscaler takes (N, h, w, C) uint8 and returns (N, h*s, w*s, C)
uint8. So the runtime moves a quarter of the bytes of float32, and the service does no per-pixel
Python: it decodes into and encodes from these arrays directly.

The same wrappers with pixels=False return the model's own float output (N, C, H, W): export
checks that graph against PyTorch value by value before it trusts the pixel graph.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from torch import nn

from model_export.errors import ExportError
from model_export.graph_spec import (
    MAX_BATCH,
    MAX_SIDE,
    GraphSpec,
    generator_section,
    image_shape,
    latent_cases,
    to_pixels,
    value_range_of,
)
from model_export.source import Source
from model_export.style_graphs import style_specs
from training.models.srresnet import SRResNetConfig

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}
# Tiled inference defaults for upscalers, written into the manifest (the service reads them).
# Tile 128 with overlap 32 matched whole-image inference to 3.4e-5 on the trained x2 model.
DEFAULT_TILE = 128
DEFAULT_OVERLAP = 32
# Upscalers' parity is measured at (batch, height, width): odd and prime sides, a single pixel,
# and a batch of 17 tiles.
UPSCALER_PARITY_CASES = ((1, 17, 23), (3, 9, 31), (17, 8, 13), (1, 1, 1), (2, 48, 33))


class GeneratorGraph(nn.Module):
    """z (N, latent) float32 [, labels (N,) int64] -> (N, H, W, C) uint8, or the float output."""

    def __init__(
        self, generator: nn.Module, value_range: tuple[float, float], dtype: torch.dtype, pixels: bool
    ) -> None:
        super().__init__()
        self.generator = generator
        self.low, self.high = value_range
        self.dtype = dtype
        self.pixels = pixels

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.generator(z.to(self.dtype), labels).float()  # (N, C, H, W), model units
        if not self.pixels:
            return x
        return to_pixels(x, self.low, self.high)


class UpscalerGraph(nn.Module):
    """(N, h, w, C) uint8 -> (N, h*s, w*s, C) uint8, or the float output (N, C, h*s, w*s)."""

    def __init__(self, generator: nn.Module, dtype: torch.dtype, pixels: bool) -> None:
        super().__init__()
        self.generator = generator
        self.dtype = dtype
        self.pixels = pixels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).to(self.dtype) / 255.0  # (N, C, h, w) in [0, 1]
        y = self.generator(x).float()  # (N, C, h*s, w*s), nominally [0, 1], not clamped
        if not self.pixels:
            return y
        return to_pixels(y, 0.0, 1.0)


def build_graph(source: Source, spec: GraphSpec, precision: str, pixels: bool) -> nn.Module:
    """A fresh copy of the source's generator at `precision`, wrapped for export."""
    if precision not in PRECISIONS:
        raise ExportError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    dtype = PRECISIONS[precision]
    with warnings.catch_warnings():  # .to() on a TorchScript module warns about .grad
        warnings.simplefilter("ignore")
        generator = copy.deepcopy(source.generator).to(dtype)
    return spec.wrap(generator, dtype, pixels).eval()


def graph_specs(source: Source) -> list[GraphSpec]:
    """The graphs a version publishes, model.onnx first."""
    if source.task == "upscale":
        return [_upscaler_spec(source)]
    if source.kind == "style":
        return style_specs(source)
    return [_generator_spec(source)]


def _generator_spec(source: Source) -> GraphSpec:
    config = source.config
    channels, height, width = image_shape(source)
    latent = int(config["latent_dim"])
    num_classes = int(config.get("num_classes", 0))
    value_range = value_range_of(source)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    example: tuple[torch.Tensor, ...] = (torch.randn(3, latent),)
    inputs: list[dict[str, Any]] = [{"name": "z", "dtype": "float32", "shape": ["batch", latent]}]
    dynamic: dict[str, dict[int, Any]] = {"z": {0: batch}}
    if num_classes > 0:
        example += (torch.arange(3) % num_classes,)
        inputs.append({"name": "labels", "dtype": "int64", "shape": ["batch"]})
        dynamic["labels"] = {0: batch}
    outputs = [
        {"name": "image", "dtype": "uint8", "shape": ["batch", height, width, channels], "layout": "NHWC"}
    ]
    section = generator_section(source, latent, num_classes)
    cases = latent_cases(latent, num_classes, torch.Generator().manual_seed(0))
    return GraphSpec(
        input_names=[i["name"] for i in inputs],
        output_name="image",
        example_inputs=example,
        dynamic_shapes=dynamic,
        manifest_inputs=inputs,
        manifest_outputs=outputs,
        model_value_range=value_range,
        task_section=section,
        wrap=lambda g, dtype, pixels: GeneratorGraph(g, value_range, dtype, pixels),
        parity_inputs=cases,
    )


def upscaler_cases(channels: int) -> list[tuple[torch.Tensor, ...]]:
    """An upscaler's parity inputs: random uint8 images at UPSCALER_PARITY_CASES."""
    rng = torch.Generator().manual_seed(0)
    return [
        (torch.randint(0, 256, (n, h, w, channels), generator=rng, dtype=torch.uint8),)
        for n, h, w in UPSCALER_PARITY_CASES
    ]


def _upscaler_spec(source: Source) -> GraphSpec:
    config = source.config
    scale, channels = int(config["scale"]), int(config["channels"])
    if channels not in (1, 3):
        raise ExportError(f"{source.path}: an upscaler with {channels} channels cannot take images")
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    height = torch.export.Dim("height", min=1, max=MAX_SIDE)
    width = torch.export.Dim("width", min=1, max=MAX_SIDE)
    if source.receptive_radius is not None:  # an adopted upscaler's, probed or declared
        radius = source.receptive_radius
    else:
        radius = SRResNetConfig(**config).receptive_radius()
    overlap = max(DEFAULT_OVERLAP, radius)  # a tile's border must hold what its edge pixels see
    section = {
        "scale": scale,
        "channels": channels,
        "receptive_radius": radius,
        "tile": max(DEFAULT_TILE, 4 * overlap),
        "overlap": overlap,
    }
    cases = upscaler_cases(channels)
    return GraphSpec(
        input_names=["image"],
        output_name="upscaled",
        example_inputs=(torch.randint(0, 256, (2, 20, 24, channels), dtype=torch.uint8),),
        dynamic_shapes={"image": {0: batch, 1: height, 2: width}},
        manifest_inputs=[
            {
                "name": "image",
                "dtype": "uint8",
                "shape": ["batch", "height", "width", channels],
                "layout": "NHWC",
            }
        ],
        manifest_outputs=[
            {
                "name": "upscaled",
                "dtype": "uint8",
                "shape": ["batch", f"height*{scale}", f"width*{scale}", channels],
                "layout": "NHWC",
            }
        ],
        model_value_range=(0.0, 1.0),
        task_section=section,
        wrap=lambda g, dtype, pixels: UpscalerGraph(g, dtype, pixels),
        parity_inputs=cases,
    )
