"""A model made elsewhere behind this project's own interface (`AdoptedGenerator`,
`AdoptedUpscaler`), then probed: run on small inputs, its output must be a float image batch
(N, 1|3, H, W) in the declared layout, one image per latent, and an upscaler's output `scale`
times its input; an upscaler's receptive radius is measured when not declared.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model_export.adopt_interface import Interface
from model_export.errors import ExportError, first_line

PROBE_BATCH = 2
RADIUS_PROBE_SIDE = 96  # an impulse in the middle of this image finds receptive radii up to 47


class AdoptedGenerator(nn.Module):
    """z (N, latent) [, labels (N,) int64] -> (N, C, H, W) in the declared output range."""

    def __init__(self, net: nn.Module, interface: Interface) -> None:
        super().__init__()
        self.net = net
        self.classes = interface.classes
        self.onehot = interface.label_format == "onehot"
        self.nhwc = interface.layout == "nhwc"

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is None:
            out = self.net(z)
        elif self.onehot:
            out = self.net(z, F.one_hot(labels, self.classes).to(z.dtype))
        else:
            out = self.net(z, labels)
        if isinstance(out, tuple | list):  # a model that also returns, e.g., its latents
            out = out[0]
        return out.permute(0, 3, 1, 2) if self.nhwc else out


class AdoptedUpscaler(nn.Module):
    """(N, C, h, w) in [0, 1] -> (N, C, h*s, w*s) in [0, 1] (not clamped), through a model that
    takes and gives pixels in its own declared ranges and layout."""

    def __init__(self, net: nn.Module, interface: Interface) -> None:
        super().__init__()
        self.net = net
        self.in_low, self.in_high = interface.input_range
        self.out_low, self.out_high = interface.output_range
        self.nhwc = interface.layout == "nhwc"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * (self.in_high - self.in_low) + self.in_low
        if self.nhwc:
            x = x.permute(0, 2, 3, 1)
        y = self.net(x)
        if isinstance(y, tuple | list):
            y = y[0]
        if self.nhwc:
            y = y.permute(0, 3, 1, 2)
        return (y - self.out_low) / (self.out_high - self.out_low)


def adapt(net: nn.Module, interface: Interface) -> nn.Module:
    return (
        AdoptedGenerator(net, interface) if interface.task == "generate" else AdoptedUpscaler(net, interface)
    )


@dataclass
class Probed:
    shape: tuple[int, int, int]  # generate: (C, H, W); upscale: (C, 0, 0)
    receptive_radius: int | None = None
    notes: list[str] = field(default_factory=list)


def probe(adapted: nn.Module, interface: Interface) -> Probed:
    """Run the adopted model on small inputs and check what it gives against what was declared."""
    if interface.task == "generate":
        return _probe_generator(adapted, interface)
    return _probe_upscaler(adapted, interface)


def _call(adapted: nn.Module, inputs: tuple[torch.Tensor, ...], described: str) -> torch.Tensor:
    try:
        with torch.no_grad():
            out = adapted(*inputs)
    except Exception as e:
        raise ExportError(f"the model fails on {described}: {type(e).__name__}: {first_line(e)}") from None
    if not isinstance(out, torch.Tensor):
        raise ExportError(f"the model returns a {type(out).__name__} on {described}, not a tensor")
    return out


def _probe_generator(adapted: nn.Module, interface: Interface) -> Probed:
    assert interface.latent_size is not None
    z = torch.randn(PROBE_BATCH, interface.latent_size, generator=torch.Generator().manual_seed(0))
    inputs: tuple[torch.Tensor, ...] = (z,)
    described = f"z of shape {tuple(z.shape)}"
    if interface.classes:
        inputs += (torch.arange(PROBE_BATCH) % interface.classes,)
        described += f" with {interface.label_format} labels of {interface.classes} classes"
    out = _call(adapted, inputs, described)
    _check_image(out, PROBE_BATCH, interface)
    c, h, w = (int(d) for d in out.shape[1:])
    return Probed((c, h, w))


def _check_image(out: torch.Tensor, batch: int, interface: Interface) -> None:
    layout = interface.layout.upper()
    if not out.is_floating_point():
        raise ExportError(
            f"the model's output is {out.dtype}, not a float image: adopted models return floats"
        )
    if out.dim() != 4:
        raise ExportError(
            f"the model's output has shape {tuple(out.shape)}: "
            f"not an image batch ({layout} expects 4 dimensions)"
        )
    if out.shape[0] != batch:
        raise ExportError(
            f"the model's output has shape {tuple(out.shape)} for a "
            f"batch of {batch}: its first dimension is not the batch"
        )
    channels = int(out.shape[1])  # after the adapter: NCHW
    if channels not in (1, 3):
        hint = " (is the layout nhwc?)" if interface.layout == "nchw" and out.shape[-1] in (1, 3) else ""
        hint = hint or (
            " (is the layout nchw?)" if interface.layout == "nhwc" and out.shape[2] in (1, 3) else ""
        )
        raise ExportError(
            f"the model's output has {channels} channels in the "
            f"declared {layout} layout: images have 1 or 3{hint}"
        )
    if not torch.isfinite(out).all():
        raise ExportError("the model's output holds NaN or inf on the probe inputs")


def _probe_upscaler(adapted: nn.Module, interface: Interface) -> Probed:
    assert interface.scale is not None
    notes: list[str] = []
    channels = None
    for c in (3, 1):
        x = torch.rand(PROBE_BATCH, c, 11, 13, generator=torch.Generator().manual_seed(0))
        try:
            out = _call(adapted, (x,), f"a {c}-channel image batch of 11x13")
        except ExportError as e:
            notes.append(str(e))
            continue
        _check_image(out, PROBE_BATCH, interface)
        if out.shape[1] != c:
            raise ExportError(f"the upscaler gives {out.shape[1]} channels for {c}")
        if tuple(out.shape[2:]) != (11 * interface.scale, 13 * interface.scale):
            raise ExportError(
                f"the upscaler turns 11x13 into {out.shape[2]}x{out.shape[3]}, "
                f"not x{interface.scale} as declared"
            )
        channels = c
        break
    if channels is None:
        raise ExportError(notes[0])
    radius = interface.receptive_radius
    if radius is None:
        radius = _receptive_radius(adapted, channels, interface.scale)
    return Probed((channels, 0, 0), radius)


def _receptive_radius(adapted: nn.Module, channels: int, scale: int) -> int:
    """How far (in input pixels) a change to one pixel reaches in the output: an impulse in the
    middle of a grey image. Tiles overlap by at least this much."""
    side = RADIUS_PROBE_SIDE
    base = torch.full((1, channels, side, side), 0.5)
    bumped = base.clone()
    bumped[0, :, side // 2, side // 2] = 0.9
    with torch.no_grad():
        diff = (adapted(bumped) - adapted(base)).abs().amax(dim=(0, 1))  # (side*s, side*s)
    ys, xs = torch.nonzero(diff > 1e-6, as_tuple=True)
    if ys.numel() == 0:
        return 0
    centre = (side // 2) * scale + scale / 2
    reach = float(max((ys.float() - centre).abs().max(), (xs.float() - centre).abs().max())) / scale
    radius = int(np.ceil(reach)) + 1
    if radius >= side // 2 - 1:
        raise ExportError(
            f"a change to one pixel reaches the whole {side}x{side} probe image: this upscaler's output "
            "depends on the whole image (global pooling or attention?), so it cannot be served in tiles; "
            "declare --receptive-radius if it is local after all"
        )
    return radius
