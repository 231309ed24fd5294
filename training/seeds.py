"""`gan-train seeds RUN_DIR [RUN_DIR ...]`: one recipe's runs (other seeds) as mean ± sd, the
way a results table should report them: one seed's number says little about the recipe."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

# The figures a results table reports, in order; a run's eval.json may have more.
GAN_KEYS = (
    "accuracy",
    "cas",
    "fd_ratio",
    "precision",
    "recall",
    "recall_real_baseline",
    "memorised_share",
    "nn_distance_ratio",
    "modes",
    "hq_fraction",
    "mode_kl",
)
SR_KEYS = tuple(
    f"{which}_{key}"
    for which in ("validation", "test")
    for key in ("psnr_y", "psnr_y_bicubic", "psnr_gain_db", "ssim", "ssim_bicubic", "niqe", "niqe_bicubic")
)


def read_evaluations(run_dirs: list[Path]) -> list[dict[str, Any]]:
    evaluations = []
    for run in run_dirs:
        path = run / "eval.json"
        if not path.is_file():
            raise FileNotFoundError(f"{run}: no eval.json (a finished run, or `gan-train eval {run}`)")
        evaluations.append(json.loads(path.read_text()))
    return evaluations


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for one value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def summarize(evaluations: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{key: {"mean", "sd", "values"}} for each table figure every evaluation has."""
    keys = SR_KEYS if any(k.startswith("validation_") for k in evaluations[0]) else GAN_KEYS
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        values = [e.get(key) for e in evaluations]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            numbers = [float(v) for v in values if v is not None]
            mean, sd = mean_sd(numbers)
            out[key] = {"mean": mean, "sd": sd, "values": numbers}
    return out


def markdown(summary: dict[str, dict[str, Any]], runs: list[Path]) -> str:
    lines = [f"| figure | mean ± sd over {len(runs)} run(s) | each run |", "|---|---|---|"]
    for key, s in summary.items():
        each = " / ".join(f"{v:.4g}" for v in s["values"])
        lines.append(f"| {key} | {s['mean']:.4g} ± {s['sd']:.2g} | {each} |")
    lines.append("")
    lines.append("runs: " + ", ".join(str(r) for r in runs))
    return "\n".join(lines)
