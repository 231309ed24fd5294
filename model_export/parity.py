"""Does the ONNX model compute what PyTorch computes? Measured before anything is published.

The graph's parity inputs (random, at several batch sizes; for upscalers odd image sizes down to
1x1; for a style generator's synthesis, ws from its mapping) go through
the fp32 PyTorch generator and through ONNX Runtime. Two checks:
- values: the float graph's output vs PyTorch's, max abs error in model units, against a tolerance
  (fp32 tight, fp16 looser) and free of NaN/inf;
- pixels (graphs that output pixels): the published uint8 graph vs PyTorch's output rounded the
  same way; rounding may flip a value that sits on a .5 boundary by one level, so the allowance
  is 1 level plus the tolerance.
An fp16 variant converted from a published fp32 graph has no PyTorch to compare with:
measure_graph_parity holds it to the fp32 graph in ONNX Runtime instead, on the same inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from model_export.errors import ExportError
from model_export.fp16_graph import tapped
from model_export.graph_spec import GraphSpec, to_pixels

TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2}
PROVIDER = "CPUExecutionProvider"
TORCH_REFERENCE = "PyTorch fp32 on CPU"


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

    def manifest(self, tolerance: float, precision: str, reference: str = TORCH_REFERENCE) -> dict[str, Any]:
        return {
            "reference": reference,
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
    return _judged(report, tolerance, (low, high), "PyTorch")


def _judged(
    report: ParityReport, tolerance: float, value_range: tuple[float, float], against: str
) -> ParityReport:
    """The report, or ExportError when it is over the tolerance: values within it, pixels within
    1 level (rounding at a .5 boundary) plus the tolerance in levels."""
    low, high = value_range
    if report.max_abs_error > tolerance:
        raise ExportError(
            f"parity check failed: ONNX Runtime differs from {against} by up to {report.max_abs_error:.3g} "
            f"(tolerance {tolerance:.3g}); per input: "
            + ", ".join(f"{c['input_shape']}: {c['max_abs_error']:.3g}" for c in report.cases)
        )
    allowed = 1 + math.ceil(tolerance * 255 / (high - low))
    if report.pixel_max_diff > allowed:
        raise ExportError(
            f"parity check failed: the uint8 output differs from {against}'s by up to "
            f"{report.pixel_max_diff} levels (allowed {allowed})"
        )
    return report


def measure_graph_parity(
    reference: Path,
    variant: Path,
    feeds: list[dict[str, np.ndarray]],
    value_range: tuple[float, float],
    tolerance: float,
    scratch: Path,
) -> ParityReport:
    """A pixel graph (an fp16 variant) against another pixel graph of the same model (the
    published fp32 one), both in ONNX Runtime on the same feeds, where no PyTorch generator is
    left to compare with. Values are compared where each graph rounds to pixels (fp16_graph.tapped),
    scaled back to model units, so the tolerance means what it means against PyTorch; pixels as
    in measure_parity. The cases name the variant's file."""
    paths = []
    for path in (reference, variant):
        tapped_path = scratch / f"tapped-{path.name}"
        onnx.save(tapped(onnx.load(str(path))), str(tapped_path))
        paths.append(tapped_path)
    reference_session, variant_session = session(paths[0]), session(paths[1])
    low, high = value_range
    units = (high - low) / 255  # model units per pixel level
    report = ParityReport()
    for feed in feeds:
        shape = list(next(iter(feed.values())).shape)
        expected_pixels, expected = _run(reference_session, feed, shape, outputs=2)
        pixels, got = _run(variant_session, feed, shape, outputs=2)
        if not np.isfinite(got).all():
            raise ExportError(f"input {shape}: the ONNX model produced NaN or inf")
        error = float(np.abs(got - expected).max()) * units
        report.max_abs_error = max(report.max_abs_error, error)
        report.cases.append({"graph": variant.name, "input_shape": shape, "max_abs_error": error})
        diff = np.abs(pixels.astype(np.int16) - expected_pixels.astype(np.int16))
        report.pixel_max_diff = max(report.pixel_max_diff, int(diff.max()))
        report.pixel_mismatches += int((diff > 0).sum())
        report.pixel_count += diff.size
    return _judged(report, tolerance, value_range, reference.name)


def _run(sess: ort.InferenceSession, feed: dict[str, np.ndarray], shape: list[int], outputs: int = 1) -> Any:
    """The first output, or a list of the first `outputs` outputs."""
    try:
        found = [np.asarray(out) for out in sess.run(None, feed)[:outputs]]
    except Exception as e:  # see session()
        raise ExportError(f"input {shape}: ONNX Runtime failed: {e}") from None
    return found[0] if outputs == 1 else found
