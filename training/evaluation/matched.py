"""FD and precision/recall at matched sample sizes, against a real-versus-real baseline.

Both numbers depend on how many samples enter them (FD's covariance estimate is biased upward at
small N; a k-NN ball shrinks as points are added), so G is judged at exactly the size of its
baseline: the held-out images are split into two disjoint halves A and B (h images each); G's
figures are FD(A, h samples) and precision/recall(A, h samples), the baseline's FD(A, B) and
precision/recall(A, B). Over SPLITS random splits (a new subset of samples each time) the figures
are averaged; the middle 95 % of a figure over the splits is its interval: how far one
measurement at this size moves with other real and generated images. Training images never enter:
a G that replays them scores as real data would, which the memorisation check is there to catch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from training.evaluation.bootstrap import middle
from training.evaluation.frechet import frechet_distance, precision_recall

SPLITS = 50
SEED = 2718


def smallest_heldout(k: int) -> int:
    """Held-out images needed: each half is a k-NN manifold, so more than k images per half."""
    return 2 * (k + 1)


def matched_quality(heldout: np.ndarray, fake: np.ndarray, k: int, splits: int = SPLITS) -> dict[str, Any]:
    """heldout (M, F) real and fake (N, F) generated features, N >= M // 2 >= k + 1. Returns fd,
    fd_real_baseline, fd_ratio (of the means), precision, recall and their baselines, each G figure's
    `_ci95`, and `matched_size` (h)."""
    m, n = heldout.shape[0], fake.shape[0]
    h = m // 2
    if h <= k:
        raise ValueError(f"need at least {smallest_heldout(k)} held-out images for matched sizes, got {m}")
    if n < h:
        raise ValueError(f"need at least {h} generated samples to match {h} held-out images, got {n}")
    rng = np.random.default_rng(SEED)
    rows: dict[str, list[float]] = {key: [] for key in ("fd", "fd_base", "p", "r", "p_base", "r_base")}
    for _ in range(splits):
        order = rng.permutation(m)
        a, b = heldout[order[:h]], heldout[order[h : 2 * h]]
        generated = fake[rng.choice(n, size=h, replace=False)]
        precision, recall = precision_recall(a, generated, k)
        base_precision, base_recall = precision_recall(a, b, k)
        for key, value in (
            ("fd", frechet_distance(a, generated)),
            ("fd_base", frechet_distance(a, b)),
            ("p", precision),
            ("r", recall),
            ("p_base", base_precision),
            ("r_base", base_recall),
        ):
            rows[key].append(value)
    values = {key: np.array(v) for key, v in rows.items()}
    ratios = values["fd"] / np.maximum(values["fd_base"], 1e-12)
    mean = {key: float(v.mean()) for key, v in values.items()}
    return {
        "fd": mean["fd"],
        "fd_real_baseline": mean["fd_base"],
        "fd_ratio": mean["fd"] / max(mean["fd_base"], 1e-12),
        "fd_ci95": middle(values["fd"]),
        "fd_ratio_ci95": middle(ratios),
        "precision": mean["p"],
        "precision_real_baseline": mean["p_base"],
        "recall": mean["r"],
        "recall_real_baseline": mean["r_base"],
        "recall_ci95": middle(values["r"]),
        "matched_size": h,
        "matched_splits": splits,
    }
