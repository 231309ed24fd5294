"""Generators and upscalers made elsewhere, adopted into the repository: a user's own `nn.Module`
(imported from `pkg.mod:Factory`, its state dict read with weights_only=True), a TorchScript file,
or an ONNX file.

What cannot be probed is declared (`Interface`: the task, latent size, classes, the output's
value range and layout; for an upscaler the scale and the input's range); what can be probed is
checked against it: the output must be a float image batch (N, 1|3, H, W) in the declared layout,
one image per latent, and an upscaler's output `scale` times its input. The model then goes
behind this project's own interface (`AdoptedGenerator`, `AdoptedUpscaler`), and export goes on
as for a native generator: the pixel pre/post-processing around it, parity, manifest, card.

A Python module is exported by torch.export like a native generator. A TorchScript file is first
exported by TorchScript's own ONNX exporter (torch.export cannot trace it); that graph, or an
ONNX file, is then wrapped in ONNX itself (`compose`): the same casts, layout, scaling, rounding and
clamping nodes around the user's graph, and parity is measured against the original (the
TorchScript module in PyTorch, the ONNX file in ONNX Runtime).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import io
import json
import pickle
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

from model_export.errors import ExportError
from model_export.onnx_wrap import check_interface, prepared
from model_export.source import Source
from model_repository.manifest import sha256_file

TASKS = ("generate", "upscale")
LAYOUTS = ("nchw", "nhwc")
LABEL_FORMATS = ("index", "onehot")
PROBE_BATCH = 2
RADIUS_PROBE_SIDE = 96  # an impulse in the middle of this image finds receptive radii up to 47


@dataclass(frozen=True)
class Interface:
    """What a foreign model takes and gives, as declared on the command line."""

    task: str
    output_range: tuple[float, float]
    layout: str = "nchw"
    latent_size: int | None = None  # generate
    classes: int = 0  # generate: 0 = unconditional
    class_names: tuple[str, ...] = ()
    label_format: str = "index"  # how the model takes labels: int64 indices, or one-hot floats
    scale: int | None = None  # upscale
    input_range: tuple[float, float] = (0.0, 1.0)  # upscale: what the model expects its pixels in
    receptive_radius: int | None = None  # upscale: probed when not declared

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ExportError(f"--task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.layout not in LAYOUTS:
            raise ExportError(f"--layout must be nchw or nhwc, got {self.layout!r}")
        if self.label_format not in LABEL_FORMATS:
            raise ExportError(f"--label-format must be index or onehot, got {self.label_format!r}")
        for what, (low, high) in (("--output-range", self.output_range), ("--input-range", self.input_range)):
            if not (np.isfinite(low) and np.isfinite(high) and high > low):
                raise ExportError(f"{what} must be LOW,HIGH with LOW < HIGH, got {low},{high}")
        if self.task == "generate":
            if self.latent_size is None or self.latent_size < 1:
                raise ExportError("--task generate needs --latent-size (the length of z)")
            if self.classes < 0 or (self.class_names and len(self.class_names) != self.classes):
                raise ExportError(
                    f"--class-names gives {len(self.class_names)} names for {self.classes} classes"
                )
            if self.scale is not None:
                raise ExportError("--scale is for --task upscale")
        else:
            if self.scale is None or not 1 <= self.scale <= 16:
                raise ExportError("--task upscale needs --scale, from 1 to 16")
            if self.latent_size is not None or self.classes:
                raise ExportError("--latent-size and --classes are for --task generate")

    def names(self) -> list[str]:
        return list(self.class_names) or [str(i) for i in range(self.classes)]

    def summary(self) -> dict[str, Any]:
        """For the manifest's source section."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if v is not None}


def parse_range(text: str, what: str) -> tuple[float, float]:
    """'0,1' or '-1,1' -> (low, high)."""
    parts = text.split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise ExportError(f"{what} must be LOW,HIGH (e.g. 0,1 or -1,1), got {text!r}") from None
    return low, high


# --- the user's model behind this project's interface ---------------------------------------------


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


# --- reading the three kinds of source ------------------------------------------------------------


def load_module(ref: str, weights: Path | None, kwargs: dict[str, Any]) -> nn.Module:
    """`pkg.mod:Factory` called with kwargs (from the current directory or PYTHONPATH), its
    weights loaded from a state dict (weights_only=True: a pickle cannot run code here)."""
    module_name, colon, attr = ref.partition(":")
    if not colon or not module_name or not attr:
        raise ExportError(f"--module must be package.module:Factory, got {ref!r}")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # the user's code: any exception at import
        raise ExportError(f"--module {ref}: cannot import {module_name}: {type(e).__name__}: {e}") from None
    factory: Any = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise ExportError(f"--module {ref}: {module_name} has no {attr}")
    try:
        net = factory(**kwargs)
    except Exception as e:
        raise ExportError(
            f"--module {ref}: {attr}(**{json.dumps(kwargs)}) failed: {type(e).__name__}: {e}"
        ) from None
    if not isinstance(net, nn.Module):
        raise ExportError(
            f"--module {ref}: {attr}(...) returned a {type(net).__name__}, not a torch nn.Module"
        )
    if weights is not None:
        net.load_state_dict(_state_dict(weights, net))
    return net.float().eval()


def _state_dict(path: Path, net: nn.Module) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ExportError(f"--weights {path}: no such file")
    if is_torchscript(path):
        raise ExportError(f"--weights {path}: a TorchScript file; export it as it is: gan-export {path} ...")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        reason = str(e).split("WeightsUnpickler error:")[-1].strip().split("\n")[0].strip()
        raise ExportError(f"--weights {path}: refused: not a plain state dict ({reason})") from None
    except Exception as e:
        raise ExportError(f"--weights {path}: not a readable PyTorch file: {first_line(e)[:200]}") from None
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        payload = payload["state_dict"]  # the common {"state_dict": ...} wrapping
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise ExportError(f"--weights {path}: not a state dict (a dictionary of tensors)")
    missing, unexpected = _mismatch(net, payload)
    if missing or unexpected:
        raise ExportError(
            f"--weights {path}: the weights do not fit the module: "
            + "; ".join(
                part
                for part in (
                    f"missing {', '.join(missing[:5])}" if missing else "",
                    f"unexpected {', '.join(unexpected[:5])}" if unexpected else "",
                )
                if part
            )
        )
    return payload


def _mismatch(net: nn.Module, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    return missing, unexpected + shapes


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.load(str(path), map_location="cpu").float().eval()
    except Exception as e:
        raise ExportError(f"{path}: not a readable TorchScript file: {first_line(e)}") from None


def is_torchscript(path: Path) -> bool:
    """A TorchScript file is a zip archive with the module's code in it."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())


class OnnxNet(nn.Module):
    """An ONNX graph run by ONNX Runtime, called like a module (the reference its adoption is
    measured against). Holds the model's bytes; the session is made on first use."""

    def __init__(self, model: onnx.ModelProto) -> None:
        super().__init__()
        self.data = model.SerializeToString()
        inputs = [i for i in model.graph.input if i.name not in _initializers(model)]
        self.input_names = [i.name for i in inputs]
        # Each input as the graph declares it (float16 latents, int32 labels): the wrapper casts
        # to these too.
        self.input_types = [
            onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type) for i in inputs
        ]
        self._session: ort.InferenceSession | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> OnnxNet:
        return self  # immutable bytes and a stateless session: one is enough

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self._session is None:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            self._session = ort.InferenceSession(self.data, options, providers=["CPUExecutionProvider"])
        feed = {
            name: t.detach().numpy().astype(dtype)
            for name, t, dtype in zip(self.input_names, inputs, self.input_types, strict=True)
        }
        return torch.from_numpy(np.asarray(self._session.run(None, feed)[0]).astype(np.float32))


def _initializers(model: onnx.ModelProto) -> set[str]:
    return {i.name for i in model.graph.initializer}


def read_onnx(path: Path) -> onnx.ModelProto:
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:
        raise ExportError(f"{path}: not a valid ONNX model: {first_line(e)}") from None
    return model


def torchscript_to_onnx(
    net: torch.jit.ScriptModule, interface: Interface, example: tuple[torch.Tensor, ...]
) -> onnx.ModelProto:
    """The TorchScript module as an ONNX graph (TorchScript's own exporter), with a dynamic batch
    axis (and, for an upscaler, dynamic image sides)."""
    names = [f"input_{i}" for i in range(len(example))]
    axes: dict[str, dict[int, str]] = {name: {0: "batch"} for name in names}
    axes["output"] = {0: "batch"}
    if interface.task == "upscale":
        sides = (2, 3) if interface.layout == "nchw" else (1, 2)
        axes[names[0]] |= {sides[0]: "height", sides[1]: "width"}
        axes["output"] |= {sides[0]: "out_height", sides[1]: "out_width"}
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        tempfile.TemporaryDirectory(prefix="gan-export-") as scratch,
    ):
        warnings.simplefilter("ignore")
        path = Path(scratch) / "torchscript.onnx"
        try:
            torch.onnx.export(
                net,
                example,
                str(path),
                input_names=names,
                output_names=["output"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
        except Exception as e:
            raise ExportError(f"the TorchScript module cannot be exported to ONNX: {first_line(e)}") from None
        return onnx.load(str(path))


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# --- probing ----------------------------------------------------------------------------------------


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


# --- the source export starts from ------------------------------------------------------------------


def adopted_source(
    interface: Interface,
    *,
    path: Path | None = None,
    module: str | None = None,
    weights: Path | None = None,
    kwargs: dict[str, Any] | None = None,
) -> Source:
    """A foreign model as an export source: `module` (with `weights`, `kwargs`), or `path`, a
    TorchScript or ONNX file. Probed and checked against `interface`."""
    raw: onnx.ModelProto | None = None
    if module is not None:
        net: nn.Module = load_module(module, weights, kwargs or {})
        code = inspect.getsourcefile(type(net))
        fingerprint = weights if weights is not None else Path(code) if code else None
        kind, origin = "module", module
        digest = (
            sha256_file(fingerprint)
            if fingerprint is not None
            else hashlib.sha256(module.encode()).hexdigest()
        )
        described: dict[str, Any] = {"module": module, "kwargs": kwargs or {}}
    else:
        assert path is not None
        if not path.is_file():
            raise ExportError(f"{path}: no such file")
        digest, origin = sha256_file(path), str(path)
        if path.suffix.lower() == ".onnx" or not is_torchscript(path):
            raw = prepared(read_onnx(path))  # converted once, when older than the wrapper needs
            net, kind, described = OnnxNet(raw), "onnx", {}
        else:
            net, kind, described = load_torchscript(path), "torchscript", {}
    if raw is not None:  # an ONNX file's inputs and output, before anything runs it
        check_interface(raw, interface)
    adapted = adapt(net, interface)
    probed = probe(adapted, interface)
    if kind == "torchscript":
        raw = torchscript_to_onnx(net, interface, _native_example(interface, probed))  # type: ignore[arg-type]
        check_interface(raw, interface)  # opset 17: nothing to convert
    channels = probed.shape[0]
    if interface.task == "generate":
        config = {"latent_dim": interface.latent_size, "num_classes": interface.classes, **described}
        data = {"value_range": list(interface.output_range), "class_names": interface.names()}
    else:
        config = {"scale": interface.scale, "channels": channels, **described}
        data = {"value_range": [0.0, 1.0]}
    return Source(
        path=Path(origin),
        sha256=digest,
        format={"module": "Python module", "torchscript": "TorchScript file", "onnx": "ONNX file"}[kind],
        step=None,
        kind=kind,
        config=config,
        generator=adapted,
        weights="as given",
        training={"task": interface.task, "declared": interface.summary()},
        data=data,
        metrics={},
        adopted_task=interface.task,
        image_shape=probed.shape if interface.task == "generate" else None,
        receptive_radius=probed.receptive_radius,
        raw_onnx=raw,
        interface=interface,
        parameter_count=_onnx_parameters(raw) if kind == "onnx" and raw is not None else None,
    )


def _onnx_parameters(model: onnx.ModelProto) -> int:
    return max(1, sum(int(np.prod(t.dims)) for t in model.graph.initializer))


def _native_example(interface: Interface, probed: Probed) -> tuple[torch.Tensor, ...]:
    """Inputs in the model's own form (for TorchScript's exporter)."""
    if interface.task == "generate":
        assert interface.latent_size is not None
        example: tuple[torch.Tensor, ...] = (torch.randn(3, interface.latent_size),)
        if interface.classes:
            labels = torch.arange(3) % interface.classes
            example += (
                F.one_hot(labels, interface.classes).float()
                if interface.label_format == "onehot"
                else labels,
            )
        return example
    channels = probed.shape[0]
    shape = (3, channels, 17, 19) if interface.layout == "nchw" else (3, 17, 19, channels)
    low, high = interface.input_range
    return (torch.rand(shape) * (high - low) + low,)
