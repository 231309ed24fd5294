"""Bootstrap confidence intervals: how much a metric would move with other samples of the same
generator (the samples are redrawn with replacement; the real images stay)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

DRAWS = 50  # resamples per interval: enough for a 95 % interval's ends at this precision
CONFIDENCE = 0.95
SEED = 2024


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float], n: int, draws: int = DRAWS, seed: int = SEED
) -> list[float]:
    """[low, high] of `statistic(indices)` over `draws` resamples of range(n) with replacement:
    the percentile interval at CONFIDENCE. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    return middle(np.array([statistic(rng.integers(0, n, size=n)) for _ in range(draws)]))


def middle(values: np.ndarray) -> list[float]:
    """[low, high]: the middle CONFIDENCE share of `values` (percentiles)."""
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]
