"""A style generator's two published graphs (training/models/style.py, model_repository/styles.py).

- model.onnx, the synthesis, with the pixel interface of every generator here: ws (N, num_ws,
  w_dim) float32 and noise_0 .. noise_{L-1} (N, 1, r, r) float32 -> (N, H, W, C) uint8.
- mapping.onnx, the mapping: z (N, latent) float32 [, labels (N,) int64] -> w (N, w_dim) float32,
  published as floats (w is what a client edits and sends back).

Truncation and style mixing sit between the two, on the caller's side, so a server can mix any
sources and take a client's own w's; the manifest's generator.style holds what that needs: w_avg
(one row per class), num_ws, w_dim, the noise inputs and the coarse / middle / fine layer ranges.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from model_export.errors import ExportError
from model_export.graph_spec import (
    MAX_BATCH,
    GraphSpec,
    generator_section,
    latent_cases,
    to_pixels,
    value_range_of,
)
from model_export.source import Source
from model_repository.manifest import MAPPING_FILE
from training.models.style import StyleGenerator


class MappingGraph(nn.Module):
    """z (N, latent) float32 [, labels (N,) int64] -> w (N, w_dim) float32."""

    def __init__(self, generator: StyleGenerator, dtype: torch.dtype) -> None:
        super().__init__()
        self.mapping = generator.mapping
        self.dtype = dtype

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.mapping(z.to(self.dtype), labels).float()


class SynthesisGraph(nn.Module):
    """ws (N, num_ws, w_dim) float32, one noise image per layer (N, 1, r, r) float32 -> (N, H, W, C)
    uint8, or the float output (N, C, H, W)."""

    def __init__(
        self, generator: StyleGenerator, value_range: tuple[float, float], dtype: torch.dtype, pixels: bool
    ) -> None:
        super().__init__()
        self.synthesis = generator.synthesis
        self.low, self.high = value_range
        self.dtype, self.pixels = dtype, pixels

    def forward(self, ws: torch.Tensor, *noise: torch.Tensor) -> torch.Tensor:
        x = self.synthesis(ws.to(self.dtype), [n.to(self.dtype) for n in noise]).float()
        return to_pixels(x, self.low, self.high) if self.pixels else x


def _style_generator(module: nn.Module) -> StyleGenerator:
    if not isinstance(module, StyleGenerator):
        raise ExportError(f"expected a style generator, got {type(module).__name__}")
    return module


def synthesis_cases(
    map_cases: list[tuple[torch.Tensor, ...]],
    mapping: Callable[..., torch.Tensor],
    num_ws: int,
    noise_shapes: Sequence[Sequence[int]],
    rng: torch.Generator,
) -> list[tuple[torch.Tensor, ...]]:
    """The synthesis graph's parity inputs: the ws of real mapped latents (truncated and mixed
    ones lie between those), half of each batch's layers mixed in from another row, and noise
    images as drawn, from rng after the mapping's cases. mapping: z [, labels] -> w (PyTorch's
    at export; a published mapping.onnx for an fp16 variant, model_export.variant)."""
    cases: list[tuple[torch.Tensor, ...]] = []
    for case in map_cases:
        n = case[0].shape[0]
        w = mapping(*case)  # (n, w_dim)
        ws = w[:, None].repeat(1, num_ws, 1)
        if n > 1:  # mixed styles too: the second half of the layers from another row's w
            ws[:, num_ws // 2 :] = w.roll(1, dims=0)[:, None]
        cases.append((ws, *(torch.randn((n, *shape), generator=rng) for shape in noise_shapes)))
    return cases


def style_specs(source: Source) -> list[GraphSpec]:
    """[synthesis (model.onnx), mapping (mapping.onnx)]."""
    G = _style_generator(source.generator)
    config = source.config
    latent, w_dim, num_ws = int(config["latent_dim"]), int(config["w_dim"]), G.num_ws
    num_classes = int(config.get("num_classes", 0))
    value_range = value_range_of(source)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    section = generator_section(source, latent, num_classes)
    channels, height, width = (section["output"][k] for k in ("channels", "height", "width"))

    # --- the mapping ---
    map_inputs: list[dict[str, Any]] = [{"name": "z", "dtype": "float32", "shape": ["batch", latent]}]
    map_example: tuple[torch.Tensor, ...] = (torch.randn(3, latent),)
    map_dynamic: dict[str, Any] = {"z": {0: batch}}
    if num_classes:
        map_inputs.append({"name": "labels", "dtype": "int64", "shape": ["batch"]})
        map_example += (torch.arange(3) % num_classes,)
        map_dynamic["labels"] = {0: batch}
    rng = torch.Generator().manual_seed(0)
    map_cases = latent_cases(latent, num_classes, rng)
    map_outputs = [{"name": "w", "dtype": "float32", "shape": ["batch", w_dim]}]

    # --- the synthesis ---
    noise: list[dict[str, Any]] = [
        {"name": f"noise_{i}", "dtype": "float32", "shape": ["batch", *shape]}
        for i, shape in enumerate(G.noise_shapes)
    ]
    with torch.no_grad():
        synth_cases = synthesis_cases(map_cases, G.mapping, num_ws, G.noise_shapes, rng)
    synth_example = (torch.randn(3, num_ws, w_dim), *(torch.randn(3, *shape) for shape in G.noise_shapes))
    section["style"] = {
        "w_dim": w_dim,
        "num_ws": num_ws,
        # float32 values written as their shortest decimal (np.float32's str): they read back exact
        "w_avg": [[float(str(v)) for v in row] for row in G.w_avg.float().numpy()],
        "noise": [{"name": n["name"], "shape": n["shape"][1:]} for n in noise],
        "layers": {group: list(span) for group, span in G.style_groups().items()},
        "mapping": {"inputs": map_inputs, "outputs": map_outputs},  # its file: at publishing
    }
    synthesis = GraphSpec(
        input_names=["ws", *(str(n["name"]) for n in noise)],
        output_name="image",
        example_inputs=synth_example,
        dynamic_shapes={"ws": {0: batch}, "noise": tuple({0: batch} for _ in noise)},
        manifest_inputs=[{"name": "ws", "dtype": "float32", "shape": ["batch", num_ws, w_dim]}, *noise],
        manifest_outputs=[
            {"name": "image", "dtype": "uint8", "shape": ["batch", height, width, channels], "layout": "NHWC"}
        ],
        model_value_range=value_range,
        task_section=section,
        wrap=lambda g, dtype, pixels: SynthesisGraph(_style_generator(g), value_range, dtype, pixels),
        parity_inputs=synth_cases,
    )
    mapping = GraphSpec(
        input_names=[i["name"] for i in map_inputs],
        output_name="w",
        example_inputs=map_example,
        dynamic_shapes=map_dynamic,
        manifest_inputs=map_inputs,
        manifest_outputs=map_outputs,
        model_value_range=value_range,
        task_section=section,
        wrap=lambda g, dtype, pixels: MappingGraph(_style_generator(g), dtype),
        parity_inputs=map_cases,
        file=MAPPING_FILE,
        pixels=False,
    )
    return [synthesis, mapping]
