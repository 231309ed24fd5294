"""Does the ONNX model compute what PyTorch computes? Measured before anything is published.

The graph's parity inputs (random, at several batch sizes; for upscalers odd image sizes down to
1x1; for a style generator's synthesis, ws from its mapping) go through
the fp32 PyTorch generator and through ONNX Runtime. Two checks:
- values: the float graph's output vs PyTorch's, max abs error in model units, against a tolerance
  (fp32 tight, fp16 looser) and free of NaN/inf;
- pixels (graphs that output pixels): the published uint8 graph vs PyTorch's output rounded the
  same way; rounding may flip a value that sits on a .5 boundary by one level, so the allowance
  is 1 level plus the tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from model_export.errors import ExportError
from model_export.pixel_graphs import GraphSpec, to_pixels

TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2}
PROVIDER = "CPUExecutionProvider"


@dataclass
class ParityReport:
    max_abs_error: float = 0.0
    pixel_max_diff: int = 0
    pixel_mismatches: int = 0
    pixel_count: int = 0
    cases: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def combined(cls, reports: list[ParityReport]) -> ParityReport:
        """One report for several graphs (a style G's synthesis and mapping): the worst errors,
        every case."""
        return cls(
            max_abs_error=max(r.max_abs_error for r in reports),
            pixel_max_diff=max(r.pixel_max_diff for r in reports),
            pixel_mismatches=sum(r.pixel_mismatches for r in reports),
            pixel_count=sum(r.pixel_count for r in reports),
            cases=[case for r in reports for case in r.cases],
        )

    def manifest(self, tolerance: float, precision: str) -> dict[str, Any]:
        return {
            "reference": "PyTorch fp32 on CPU",
            "runtime": f"onnxruntime {ort.__version__} ({precision} model)",
            "provider": PROVIDER,
            "max_abs_error": self.max_abs_error,
            "tolerance": tolerance,
            "pixel_max_diff": self.pixel_max_diff,
            "pixel_mismatch_fraction": self.pixel_mismatches / max(self.pixel_count, 1),
            "cases": self.cases,
        }


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: fp16 graphs on CPU log every inserted Cast
    try:
        return ort.InferenceSession(str(path), options, providers=[PROVIDER])
    except Exception as e:  # onnxruntime raises its own exception types, not exported for typing
        raise ExportError(f"ONNX Runtime cannot load the exported model: {e}") from None


def measure_parity(
    reference: nn.Module,
    float_model: Path,
    pixel_model: Path | None,
    spec: GraphSpec,
    tolerance: float,
) -> ParityReport:
    """reference: the fp32 float graph (pixels=False) in PyTorch; pixel_model: the published uint8
    graph, None for a graph published as floats. Raises ExportError when a check fails; returns
    the measurements otherwise."""
    float_session = session(float_model)
    pixel_session = session(pixel_model) if pixel_model is not None else None
    low, high = spec.model_value_range
    report = ParityReport()
    for inputs in spec.parity_inputs:
        feed = {name: t.numpy() for name, t in zip(spec.input_names, inputs, strict=True)}
        shape = list(inputs[0].shape)
        with torch.no_grad():
            expected = reference(*inputs)  # (N, C, H, W) float32, model units
        got = _run(float_session, feed, shape)
        if got.shape != tuple(expected.shape):
            raise ExportError(
                f"input {shape}: ONNX output shape {got.shape}, PyTorch {tuple(expected.shape)}"
            )
        if not np.isfinite(got).all():
            raise ExportError(f"input {shape}: the ONNX model produced NaN or inf")
        error = float(np.abs(got - expected.numpy()).max())
        report.max_abs_error = max(report.max_abs_error, error)
        report.cases.append({"graph": spec.file, "input_shape": shape, "max_abs_error": error})
        if pixel_session is None:
            continue

        pixels = _run(pixel_session, feed, shape)
        expected_pixels = to_pixels(expected, low, high).numpy()
        if pixels.dtype != np.uint8 or pixels.shape != expected_pixels.shape:
            raise ExportError(
                f"input {shape}: pixel output {pixels.dtype} {pixels.shape}, "
                f"expected uint8 {expected_pixels.shape}"
            )
        diff = np.abs(pixels.astype(np.int16) - expected_pixels.astype(np.int16))
        report.pixel_max_diff = max(report.pixel_max_diff, int(diff.max()))
        report.pixel_mismatches += int((diff > 0).sum())
        report.pixel_count += diff.size
    if report.max_abs_error > tolerance:
        raise ExportError(
            f"parity check failed: ONNX Runtime differs from PyTorch by up to {report.max_abs_error:.3g} "
            f"(tolerance {tolerance:.3g}); per input: "
            + ", ".join(f"{c['input_shape']}: {c['max_abs_error']:.3g}" for c in report.cases)
        )
    allowed = 1 + math.ceil(tolerance * 255 / (high - low))
    if report.pixel_max_diff > allowed:
        raise ExportError(
            f"parity check failed: the uint8 output differs from PyTorch's by up to {report.pixel_max_diff} "
            f"levels (allowed {allowed})"
        )
    return report


def _run(sess: ort.InferenceSession, feed: dict[str, np.ndarray], shape: list[int]) -> np.ndarray:
    try:
        return np.asarray(sess.run(None, feed)[0])
    except Exception as e:  # see session()
        raise ExportError(f"input {shape}: ONNX Runtime failed: {e}") from None
