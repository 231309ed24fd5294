"""Seed -> latent vector, the one rule every consumer of a generator follows (model cards, the
service, clients that want to reproduce a sample). numpy only.

z ~ N(0, I) drawn from numpy's PCG64 seeded with the seed, in float32, so the same model version,
seed and label give the same image anywhere. The truncation trick (Brock et al. 2018) redraws
every component whose magnitude exceeds the threshold, from the same stream, until none does.
"""

from __future__ import annotations

import numpy as np

MAX_SEED = 2**63 - 1
# Below this, redrawing until every component fits takes unboundedly long (acceptance ~ 0.8 t).
MIN_TRUNCATION = 0.05


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
