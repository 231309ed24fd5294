"""A model made elsewhere as an export source (`adopted_source`): read (model_export.adopt_loading),
put behind this project's interface and probed against what was declared
(model_export.adopt_probing), then exported as a native generator is. A Python module goes
through torch.export; a TorchScript or ONNX file's graph is wrapped in ONNX itself
(model_export.onnx_wrap), its parity measured against the original.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from model_export.adopt_interface import Interface
from model_export.adopt_loading import (
    OnnxNet,
    is_torchscript,
    load_module,
    load_torchscript,
    read_onnx,
    torchscript_to_onnx,
)
from model_export.adopt_probing import Probed, adapt, probe
from model_export.errors import ExportError
from model_export.onnx_wrap import check_interface, prepared
from model_export.source import Source
from model_repository.manifest import sha256_file


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
