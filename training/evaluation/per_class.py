"""FD and recall class by class, for a conditional G: pooled numbers can hide a class that is
drawn badly or narrowly. Each class's generated samples are compared with that class's held-out
images, at the same sample size as the real-vs-real baseline (the class's training images)."""

from __future__ import annotations

from typing import Any

import numpy as np

from training.evaluation.frechet import PR_NEIGHBOURS, frechet_distance, precision_recall


def per_class_quality(
    heldout: np.ndarray,
    heldout_y: np.ndarray,
    train: np.ndarray,
    train_y: np.ndarray,
    fake: np.ndarray,
    fake_y: np.ndarray,
) -> dict[str, Any]:
    """Features (N, d) with their labels. Per class c with m held-out images: FD and recall of m
    generated samples of class c against them, beside m training images of class c against them.
    The worst class by FD ratio and by recall is named."""
    classes: dict[str, dict[str, float]] = {}
    for c in np.unique(heldout_y):
        real = heldout[heldout_y == c]
        m = real.shape[0]
        generated, reference = fake[fake_y == c][:m], train[train_y == c][:m]
        if min(m, generated.shape[0], reference.shape[0]) <= PR_NEIGHBOURS:
            continue  # too few images of this class to measure it
        fd, fd_base = frechet_distance(real, generated), frechet_distance(real, reference)
        recall = precision_recall(real, generated, PR_NEIGHBOURS)[1]
        recall_base = precision_recall(real, reference, PR_NEIGHBOURS)[1]
        classes[str(int(c))] = {
            "images": m,
            "fd": fd,
            "fd_real_baseline": fd_base,
            "fd_ratio": fd / max(fd_base, 1e-12),
            "recall": recall,
            "recall_real_baseline": recall_base,
        }
    if not classes:
        return {}
    worst_fd = max(classes, key=lambda c: classes[c]["fd_ratio"])
    worst_recall = min(classes, key=lambda c: classes[c]["recall"])
    return {
        "per_class": classes,
        "fd_ratio_worst_class": classes[worst_fd]["fd_ratio"],
        "fd_ratio_worst_class_label": int(worst_fd),
        "recall_worst_class": classes[worst_recall]["recall"],
        "recall_worst_class_label": int(worst_recall),
    }
