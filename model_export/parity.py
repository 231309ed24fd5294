"""Does the ONNX model compute what PyTorch computes? Measured before anything is published.

Random inputs at several batch sizes (and, for upscalers, odd image sizes, down to 1x1) go through
the fp32 PyTorch generator and through ONNX Runtime. Two checks:
- values: the float graph's output vs PyTorch's, max abs error in model units, against a tolerance
  (fp32 tight, fp16 looser) and free of NaN/inf;
- pixels: the published uint8 graph vs PyTorch's output rounded the same way; rounding may flip a
  value that sits on a .5 boundary by one level, so the allowance is 1 level plus the tolerance.
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

GENERATOR_BATCHES = (1, 3, 17)
# (batch, height, width): odd and prime sides, a single pixel, and a batch of 17 tiles.
UPSCALER_CASES = ((1, 17, 23), (3, 9, 31), (17, 8, 13), (1, 1, 1), (2, 48, 33))
TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2}
PROVIDER = "CPUExecutionProvider"


@dataclass
class ParityReport:
    max_abs_error: float = 0.0
    pixel_max_diff: int = 0
    pixel_mismatches: int = 0
    pixel_count: int = 0
    cases: list[dict[str, Any]] = field(default_factory=list)

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


def parity_inputs(spec: GraphSpec, task: str, seed: int = 0) -> list[tuple[torch.Tensor, ...]]:
    """The random inputs parity is measured on, deterministic for a given seed."""
    rng = torch.Generator().manual_seed(seed)
    cases: list[tuple[torch.Tensor, ...]] = []
    if task == "upscale":
        channels = int(spec.task_section["channels"])
        for n, h, w in UPSCALER_CASES:
            cases.append((torch.randint(0, 256, (n, h, w, channels), generator=rng, dtype=torch.uint8),))
        return cases
    latent = int(spec.task_section["latent_size"])
    classes = int(spec.task_section["classes"]["count"])
    for n in GENERATOR_BATCHES:
        z = torch.randn((n, latent), generator=rng)
        cases.append((z, torch.randint(0, classes, (n,), generator=rng)) if classes else (z,))
    return cases


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
    pixel_model: Path,
    spec: GraphSpec,
    task: str,
    tolerance: float,
) -> ParityReport:
    """reference: the fp32 float graph (pixels=False) in PyTorch. Raises ExportError when a check
    fails; returns the measurements otherwise."""
    float_session, pixel_session = session(float_model), session(pixel_model)
    low, high = spec.model_value_range
    report = ParityReport()
    for inputs in parity_inputs(spec, task):
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
        report.cases.append({"input_shape": shape, "max_abs_error": error})

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
