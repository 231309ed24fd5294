"""What a run leaves on disk besides checkpoints: metrics.jsonl, sample grids, training plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch


class MetricsLog:
    """Append-only JSON lines, flushed per record so a crash loses nothing already logged."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def read(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path)

    def truncate_after(self, step: int) -> None:
        """On resume: drop records past the checkpoint, which the resumed run writes again."""
        kept = [r for r in self.read() if r.get("step", 0) <= step]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
        tmp.replace(self.path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line from a killed process: everything before it is good
    return records


def image_grid(images: torch.Tensor, rows: int) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (rows*H + pad, cols*W + pad, C) uint8, 2-pixel gutters."""
    n, c, h, w = images.shape
    cols = math.ceil(n / rows)
    pad = 2
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    for i in range(n):
        r, col = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y : y + h, x : x + w] = pixels[i]
    return grid


def save_image_grid(images: torch.Tensor, rows: int, path: Path, min_side: int = 256) -> None:
    from PIL import Image

    grid = image_grid(images, rows)
    img = Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid)
    scale = max(1, math.ceil(min_side / max(img.size)))  # small images are enlarged, not blurred
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def save_scatter(fake: torch.Tensor, real: torch.Tensor, path: Path, title: str) -> None:
    """Toy data: generated points (N, 2) over real points, the picture that shows dropped modes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.scatter(real[:, 0], real[:, 1], s=2, c="tab:gray", alpha=0.4, label="real")
    ax.scatter(fake[:, 0], fake[:, 1], s=2, c="tab:red", alpha=0.5, label="generated")
    limit = max(float(real.abs().max()), 1.0) * 1.4
    ax.set(xlim=(-limit, limit), ylim=(-limit, limit), aspect="equal", title=title)
    ax.legend(loc="upper right", markerscale=4)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def save_training_plot(records: list[dict[str, Any]], path: Path) -> None:
    """Losses, D outputs, gradient norms and quality over steps, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if r.get("event") == "train"]
    evals = [r for r in records if r.get("event") == "eval"]
    warnings = [r for r in records if r.get("event") == "warning"]
    if not train:
        return
    steps = [r["step"] for r in train]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), dpi=90)
    ax = axes[0, 0]
    ax.plot(steps, [r["d_loss"] for r in train], label="D loss")
    ax.plot(steps, [r["g_loss"] for r in train], label="G loss")
    ax.set_title("losses")
    ax = axes[0, 1]
    ax.plot(steps, [r["d_real"] for r in train], label="D(x)")
    ax.plot(steps, [r["d_fake"] for r in train], label="D(G(z))")
    ax.set_title("discriminator outputs")
    ax = axes[1, 0]
    ax.semilogy(steps, [max(r["g_grad_norm"], 1e-12) for r in train], label="|grad G|")
    ax.semilogy(steps, [max(r["d_grad_norm"], 1e-12) for r in train], label="|grad D|")
    ax.set_title("gradient norms")
    ax = axes[1, 1]
    for key in ("hq_fraction", "accuracy", "fd_ratio", "precision", "recall"):
        points = [(r["step"], r[key]) for r in evals if key in r]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=key)
    modes = [(r["step"], r["modes"] / r["modes_total"]) for r in evals if "modes" in r]
    if modes:
        ax.plot(*zip(*modes, strict=True), marker="o", label="modes (share)")
    if "diversity_ratio" in train[0]:
        ax.plot(steps, [r["diversity_ratio"] for r in train], alpha=0.6, label="diversity ratio")
    ax.set_title("quality")
    for a in axes.flat:
        for w in warnings:
            a.axvline(w["step"], color="tab:red", alpha=0.25, lw=1)
        a.set_xlabel("step")
        if a.lines:
            a.legend(fontsize=8)
    fig.suptitle("training (red lines: health warnings)" if warnings else "training")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
