"""The model card's quality table: each figure with how it was measured; intervals survive the
trip from eval.json through generator.pt into the manifest."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from model_export.quality import quality_markdown, quality_rows
from training.models import load_generator, record_metrics, save_generator_file
from training.models.srresnet import SRResNetConfig, SRResNetGenerator

GENERATOR_METRICS = {
    "step": 3000,
    "eval_samples": 1438,
    "accuracy": 0.9888,
    "accuracy_samples": 14380,
    "accuracy_ci95_low": 0.987,
    "accuracy_ci95_high": 0.9905,
    "cas": 0.95,
    "classifier_heldout_accuracy": 0.9833,
    "fd": 89.27,
    "fd_real_baseline": 83.48,
    "fd_ratio": 1.069,
    "fd_ratio_ci95_low": 0.48,
    "fd_ratio_ci95_high": 2.08,
    "matched_size": 179,
    "precision": 0.936,
    "precision_real_baseline": 0.912,
    "recall": 0.824,
    "recall_real_baseline": 0.919,
    "memorised_share": 0.0236,
    "memorised_share_baseline": 0.05,
    "nn_distance_ratio": 1.028,
    "fd_ratio_worst_class": 3.12,
    "fd_ratio_worst_class_label": 1,
    "recall_worst_class": 0.68,
    "recall_worst_class_label": 2,
}


def test_a_generator_card_says_how_each_figure_was_measured() -> None:
    rows = {
        measure: (value, how)
        for measure, value, how in quality_rows({"task": "generate", "metrics": GENERATOR_METRICS})
    }
    assert rows["accuracy on the asked-for class"][0] == "98.88 % (95 %: 98.70-99.05)"
    assert "14380 samples" in rows["accuracy on the asked-for class"][1]
    assert rows["Classification Accuracy Score"][0] == "95.00 % (real training images: 98.33 %)"
    assert (
        rows["FD ratio (1 = new real data)"][0] == "1.07 (95 %: 0.48-2.08); FD 89.3 against 83.5 real-vs-real"
    )
    assert "179 samples against 179 held-out images" in rows["FD ratio (1 = new real data)"][1]
    assert rows["memorisation"][0].startswith("2.36 % of samples (new real data: 5.00 %)")
    assert rows["worst class"][0] == "FD ratio 3.12 (class 1); recall 0.68 (class 2)"
    # An unconditional model records neither accuracy nor CAS: those rows are absent, not empty.
    unconditional = {k: v for k, v in GENERATOR_METRICS.items() if not k.startswith(("accuracy", "cas"))}
    measures = [r[0] for r in quality_rows({"task": "generate", "metrics": unconditional})]
    assert (
        "Classification Accuracy Score" not in measures and "accuracy on the asked-for class" not in measures
    )
    assert quality_markdown({"task": "generate", "metrics": {}})[0].startswith("No quality figures")


def test_an_upscaler_card_keeps_validation_and_test_apart() -> None:
    metrics = {"step": 5000}
    for which, psnr in (("validation", 34.0), ("test", 33.1)):
        metrics |= {
            f"{which}_set": f"the {which} images",
            f"{which}_psnr_y": psnr,
            f"{which}_psnr_y_bicubic": psnr - 1.6,
            f"{which}_psnr_gain_db": 1.6,
            f"{which}_ssim": 0.92,
            f"{which}_ssim_bicubic": 0.9,
            f"{which}_niqe": 5.1,
            f"{which}_niqe_bicubic": 6.2,
            f"{which}_niqe_hr": 3.0,
        }
    table = "\n".join(quality_markdown({"task": "upscale", "metrics": metrics}))
    assert "| test: PSNR-Y | 33.10 dB (bicubic 31.50, +1.60 dB) | the test images;" in table
    assert "| validation: PSNR-Y | 34.00 dB (bicubic 32.40, +1.60 dB) | the validation images;" in table
    assert "| test: NIQE (lower is more natural) | 5.10 (bicubic 6.20, the real images 3.00) |" in table


def test_intervals_reach_the_generator_file_as_scalars(tmp_path: Path) -> None:
    generator: nn.Module = SRResNetGenerator(SRResNetConfig(scale=2, width=4, blocks=1))
    path = tmp_path / "generator.pt"
    quality = {"step": 7, "recall": 0.8, "recall_ci95": [0.75, 0.85], "per_class": {"0": {}}, "ok": True}
    save_generator_file(path, generator, "srresnet", True, {}, {}, quality)
    metrics = load_generator(path)[1]["metrics"]
    assert metrics == {
        "step": 7,
        "recall": 0.8,
        "recall_ci95_low": 0.75,
        "recall_ci95_high": 0.85,
        "ok": True,
    }
    record_metrics(path, {"recall": 0.9, "fd_ci95": [1.0, 2.0]})
    assert load_generator(path)[1]["metrics"] == {
        "recall": 0.9,
        "fd_ci95_low": 1.0,
        "fd_ci95_high": 2.0,
        "step": 7,
    }
