"""Frechet distance and k-NN precision/recall between two sets of feature vectors."""

from __future__ import annotations

import numpy as np
import torch

PR_NEIGHBOURS = 3  # k of the k-NN precision/recall


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) for features a (N, F), b (M, F).

    Tr((S_a S_b)^1/2) is computed as the sum of sqrt eigenvalues of S_a^1/2 S_b S_a^1/2, which is
    symmetric PSD, so no complex matrix square root is needed.
    """
    a, b = a.astype(np.float64), b.astype(np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    sqrt_a = _psd_sqrt(cov_a)
    cross = np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a)
    trace_sqrt = np.sqrt(np.clip(cross, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt)


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((m + m.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN balls in feature space.

    precision: share of fake samples inside some real sample's k-NN ball;
    recall: share of real samples inside some fake sample's k-NN ball.
    """
    r, f = torch.from_numpy(real).double(), torch.from_numpy(fake).double()
    return _coverage(r, f, k), _coverage(f, r, k)


def _coverage(manifold: torch.Tensor, queries: torch.Tensor, k: int) -> float:
    return float(covered(manifold, queries, k).double().mean())


def covered(manifold: torch.Tensor, queries: torch.Tensor, k: int) -> torch.Tensor:
    """(Q,) bool: each query inside some manifold point's k-NN ball."""
    if manifold.shape[0] <= k:
        raise ValueError(f"need more than k={k} samples to estimate a manifold, got {manifold.shape[0]}")
    within = torch.cdist(manifold, manifold)
    radii = within.kthvalue(k + 1, dim=1).values  # +1: each point is its own nearest neighbour
    inside = torch.cdist(queries, manifold) <= radii.unsqueeze(0)
    return inside.any(dim=1)
