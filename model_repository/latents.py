"""Seed -> latent vector, the one rule every consumer of a generator follows (model cards, the
service, clients that want to reproduce a sample). numpy only.

z ~ N(0, I) drawn from numpy's PCG64 seeded with the seed, in float32, so the same model version,
seed and label give the same image anywhere. The truncation trick (Brock et al. 2018) redraws
every component whose magnitude exceeds the threshold, from the same stream, until none does.
"""

from __future__ import annotations

import math

import numpy as np

from contract.endpoints import MAX_SEED, MIN_TRUNCATION  # the wire's bounds, shared with the client

# Below this, redrawing until every component fits takes unboundedly long (acceptance ~ 0.8 t).
INTERPOLATIONS = ("slerp", "lerp")


def latent_from_seed(seed: int, size: int, truncation: float | None = None) -> np.ndarray:
    """(size,) float32. truncation: None (no truncation) or a threshold >= 0.05 (0.5 to 2 is usual)."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in [0, {MAX_SEED}], got {seed}")
    if truncation is not None and not truncation >= MIN_TRUNCATION:  # also refuses NaN
        raise ValueError(f"truncation must be >= {MIN_TRUNCATION}, got {truncation}")
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(size)  # float64 draw, rounded once below: stable across numpy builds
    if truncation is not None:
        outside = np.abs(z) > truncation
        while outside.any():
            z[outside] = rng.standard_normal(int(outside.sum()))
            outside = np.abs(z) > truncation
    return z.astype(np.float32)


def latents_from_seeds(seeds: list[int], size: int, truncation: float | None = None) -> np.ndarray:
    """(len(seeds), size) float32: one latent per seed, each independent of the others."""
    out = np.empty((len(seeds), size), dtype=np.float32)
    for i, seed in enumerate(seeds):
        out[i] = latent_from_seed(seed, size, truncation)
    return out


def interpolate_latent(start: np.ndarray, end: np.ndarray, t: float, method: str = "slerp") -> np.ndarray:
    """(size,) float32: the point t of the way (0 to 1) from `start` to `end`.

    "slerp" follows the great circle between the two (White 2016, "Sampling Generative Networks"):
    a high-dimensional Gaussian's samples lie near a sphere, and a straight line's midpoints fall
    inside it, where the generator saw no latents in training. "lerp" is the straight line. Both
    give `start` exactly at t=0 and `end` exactly at t=1, so a walk's ends are the seeds' own images.
    """
    if not 0.0 <= t <= 1.0:  # also refuses NaN
        raise ValueError(f"t must be between 0 and 1, got {t}")
    if method not in INTERPOLATIONS:
        raise ValueError(f"method must be one of {', '.join(INTERPOLATIONS)}, got {method!r}")
    a, b = start.astype(np.float64), end.astype(np.float64)
    if method == "slerp":
        cosine = float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))
        omega = math.acos(min(1.0, max(-1.0, cosine)))
        sine = math.sin(omega)
        if sine > 1e-6:  # (anti)parallel latents have no single great circle: the line will do
            near, far = math.sin((1 - t) * omega) / sine, math.sin(t * omega) / sine
            return (near * a + far * b).astype(np.float32)
    return ((1 - t) * a + t * b).astype(np.float32)
