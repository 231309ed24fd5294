"""The model card's quality table: each recorded figure beside how it was measured, so a number
is never read without its method. Built from a manifest's `metrics` (the run's final evaluation);
a figure the evaluation did not record (an older run, an unconditional or adopted model) has no
row."""

from __future__ import annotations

from typing import Any

Row = tuple[str, str, str]  # measure, value, how it was measured


def quality_rows(manifest: dict[str, Any]) -> list[Row]:
    metrics = manifest.get("metrics") or {}
    if manifest["task"] == "generate":
        return _generator_rows(metrics)
    return [row for which in ("validation", "test") for row in _upscaler_rows(metrics, which)]


def quality_markdown(manifest: dict[str, Any]) -> list[str]:
    rows = quality_rows(manifest)
    if not rows:
        return ["No quality figures were recorded for this model (it was not trained by `gan-train`)."]
    lines = ["| measure | value | how it was measured |", "|---|---|---|"]
    lines += [f"| {measure} | {value} | {how} |" for measure, value, how in rows]
    return lines


def _pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def _interval(m: dict[str, Any], key: str, fmt: str = "{:.2f}", scale: float = 1.0) -> str:
    low, high = m.get(f"{key}_ci95_low"), m.get(f"{key}_ci95_high")
    if low is None or high is None:
        return ""
    return f" (95 %: {fmt.format(low * scale)}-{fmt.format(high * scale)})"


def _generator_rows(m: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    n, matched = m.get("eval_samples"), m.get("matched_size")
    if "accuracy" in m:
        rows.append(
            (
                "accuracy on the asked-for class",
                _pct(m["accuracy"]) + _interval(m, "accuracy", "{:.2f}", 100),
                f"the evaluation classifier's prediction on {m.get('accuracy_samples', n)} samples, "
                "classes balanced; 95 % bootstrap interval",
            )
        )
    if "cas" in m:
        rows.append(
            (
                "Classification Accuracy Score",
                f"{_pct(m['cas'])} (real training images: {_pct(m['classifier_heldout_accuracy'])})",
                f"a classifier trained on {n} samples with their asked-for labels, tested on the real "
                "held-out images; beside the same classifier trained on the real training images",
            )
        )
    if "fd_ratio" in m:
        rows.append(
            (
                "FD ratio (1 = new real data)",
                f"{m['fd_ratio']:.2f}{_interval(m, 'fd_ratio')}; FD {m['fd']:.1f} against "
                f"{m['fd_real_baseline']:.1f} real-vs-real",
                f"Frechet distance in the classifier's features: {matched} samples against {matched} "
                f"held-out images, the baseline the other {matched} held-out images against them; "
                "mean over 50 random splits; 95 %: the middle 95 % of the splits",
            )
        )
    if "recall" in m:
        rows.append(
            (
                "precision / recall",
                f"{m['precision']:.2f} / {m['recall']:.2f}{_interval(m, 'recall')}; real-vs-real "
                f"{m['precision_real_baseline']:.2f} / {m['recall_real_baseline']:.2f}",
                "k-nearest-neighbour manifolds (k = 3, Kynkaanniemi et al. 2019) at the same matched "
                "sizes and splits; the interval is recall's",
            )
        )
    if "memorised_share" in m:
        rows.append(
            (
                "memorisation",
                f"{_pct(m['memorised_share'])} of samples (new real data: "
                f"{_pct(m.get('memorised_share_baseline', 0.05))}); nearest-image distance "
                f"{m['nn_distance_ratio']:.2f}x new data's",
                "each sample's nearest training image in pixels, against how near the held-out "
                "images come: the share nearer than all but the nearest 5 % of them",
            )
        )
    if "fd_ratio_worst_class" in m:
        rows.append(
            (
                "worst class",
                f"FD ratio {m['fd_ratio_worst_class']:.2f} (class {m['fd_ratio_worst_class_label']}); "
                f"recall {m['recall_worst_class']:.2f} (class {m['recall_worst_class_label']})",
                "each class's samples against its held-out images, beside as many of its training "
                "images against them",
            )
        )
    if "modes" in m:
        rows.append(
            (
                "modes",
                f"{m['modes']}/{m['modes_total']}, {_pct(m['hq_fraction'])} high-quality samples",
                "toy data: a mode is recovered with 20 samples within 3 std of it",
            )
        )
    return rows


def _upscaler_rows(m: dict[str, Any], which: str) -> list[Row]:
    key = f"{which}_psnr_y"
    if key not in m:
        return []
    p = f"{which}_"
    where = m.get(f"{which}_set", which)
    rows: list[Row] = [
        (
            f"{which}: PSNR-Y",
            f"{m[p + 'psnr_y']:.2f} dB (bicubic {m[p + 'psnr_y_bicubic']:.2f}, "
            f"{m[p + 'psnr_gain_db']:+.2f} dB)",
            f"{where}; luma, the scale's width shaved off each border; bicubic = MATLAB's imresize",
        ),
        (
            f"{which}: SSIM",
            f"{m[p + 'ssim']:.4f} (bicubic {m[p + 'ssim_bicubic']:.4f})",
            "luma, 11x11 Gaussian window (sigma 1.5)",
        ),
    ]
    if p + "niqe" in m:
        rows.append(
            (
                f"{which}: NIQE (lower is more natural)",
                f"{m[p + 'niqe']:.2f} (bicubic {m[p + 'niqe_bicubic']:.2f}, the real images "
                f"{m[p + 'niqe_hr']:.2f})",
                "no-reference naturalness (Mittal et al. 2013, the authors' pristine model); "
                "noise and blur both raise it",
            )
        )
    return rows
