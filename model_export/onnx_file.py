"""torch module -> one self-contained .onnx file, checked by onnx.checker, at exactly the opset asked."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from model_export.errors import ExportError
from model_export.graph_spec import GraphSpec

# The exporter's own loggers, and torch.export's, which warn about each guard it cannot place.
QUIET_LOGGERS = (
    "torch.onnx",
    "torch.export",
    "torch._export",
    "torch._dynamo",
    "torch.fx.experimental.symbolic_shapes",
)
# torch's exporter emits opset >= 18 natively; 17 goes through the ONNX version converter.
MIN_OPSET = 17
DEFAULT_OPSET = 18


def max_opset() -> int:
    return int(onnx.defs.onnx_opset_version())


def check_opset(opset: int) -> int:
    if not MIN_OPSET <= opset <= max_opset():
        raise ExportError(
            f"opset must be between {MIN_OPSET} and {max_opset()} (onnx {onnx.__version__}), got {opset}"
        )
    return opset


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[io.StringIO]:
    """The exporter narrates its passes on stdout and logs about optional packages (torchvision);
    keep them for the error message, off the user's terminal."""
    captured = io.StringIO()
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(captured), _stderr_discarded():
            warnings.simplefilter("ignore")
            yield captured
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextlib.contextmanager
def _stderr_discarded() -> Iterator[None]:
    """torch.export writes the traced graph and its guard warnings to stderr (the file, and
    sys.stderr) when a trace fails: pages no user needs; export_graph says why in a line."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink, contextlib.redirect_stderr(io.StringIO()):
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def export_graph(module: nn.Module, spec: GraphSpec, path: Path, opset: int) -> onnx.ModelProto:
    """Export `module` with the spec's dynamic axes to `path` (weights inside the file), then run
    the full ONNX checker (with shape inference) and confirm the opset."""
    check_opset(opset)
    with _quiet_exporter():
        try:
            torch.onnx.export(
                module,
                spec.example_inputs,
                str(path),
                input_names=spec.input_names,
                output_names=[spec.output_name],
                dynamic_shapes=_dynamic_shapes(spec),
                opset_version=opset,
                external_data=False,
                dynamo=True,
                verbose=False,
            )
        except Exception as e:
            raise ExportError(f"the ONNX exporter failed: {exporter_reason(e)}") from None
    model = onnx.load(str(path))
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"onnx.checker rejected the exported graph: {e}") from None
    got = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if got != opset:
        raise ExportError(
            f"the exporter could not produce opset {opset} for this model (it wrote opset {got})"
        )
    return model


def exporter_reason(e: Exception) -> str:
    """One line: torch.export's errors run to pages (the traced graph, advice); the line that
    names the cause, with a hint for the common one (Python control flow on tensor values)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    for line in lines:
        if "data-dependent" in line or "data dependent" in line:
            line = re.sub(r"^<class '[^']*'>:\s*", "", line)
            return (
                f"{line[:200]} (Python control flow on tensor values, such as `if x.sum() > 0:`, does "
                "not trace: use torch.where or torch.cond)"
            )
    cause = next((line for line in lines if not line.startswith(("Failed to export", "-", "Refer"))), "")
    return f"{type(e).__name__}: {(cause or (lines[0] if lines else ''))[:300]}"


def _dynamic_shapes(spec: GraphSpec) -> dict[str, Any]:
    # torch.export matches dynamic_shapes to forward()'s parameter names: inputs left out of the
    # example (labels of an unconditional G) must not appear, and a *noise parameter takes a
    # tuple with one entry per input.
    return dict(spec.dynamic_shapes)
