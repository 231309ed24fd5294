"""The super-resolution run's training plot: losses, gradient norms and validation PSNR over steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_sr_training_plot(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if r.get("event") == "train"]
    evals = [r for r in records if r.get("event") == "eval"]
    if not train:
        return
    steps = [r["step"] for r in train]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), dpi=90)
    ax = axes[0]
    for key in ("pixel_loss", "feature_loss", "g_adv", "d_loss"):
        if key in train[0]:
            ax.semilogy(steps, [max(r[key], 1e-12) for r in train], label=key)
    ax.set_title("losses")
    ax = axes[1]
    for key in ("g_grad_norm", "d_grad_norm"):
        if key in train[0]:
            ax.semilogy(steps, [max(r[key], 1e-12) for r in train], label=key)
    ax.set_title("gradient norms")
    ax = axes[2]
    ax.plot(steps, [r["train_psnr"] for r in train], alpha=0.6, label="train crops PSNR (RGB)")
    if evals:
        ev_steps = [r["step"] for r in evals]
        ax.plot(ev_steps, [r["validation_psnr_y"] for r in evals], marker="o", label="validation PSNR-Y")
        ax.plot(ev_steps, [r["validation_psnr_y_bicubic"] for r in evals], ls="--", label="bicubic PSNR-Y")
    ax.set_title("PSNR (dB)")
    for a in axes:
        a.set_xlabel("step")
        if a.lines:
            a.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
