"""A model made elsewhere read from each of its three kinds of source: a user's own `nn.Module`
(imported from `pkg.mod:Factory`, its state dict read with weights_only=True), a TorchScript file,
or an ONNX file (run by ONNX Runtime behind `OnnxNet`, the reference its adoption is measured
against). A TorchScript module is turned into ONNX by TorchScript's own exporter, since
torch.export cannot trace it. Every failure is a one-line ExportError.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import pickle
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from model_export.adopt_interface import Interface
from model_export.errors import ExportError, first_line


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
