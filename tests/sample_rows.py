"""Batch rows for comparing two runs of a served model: rows that differ from each other, so that a
mixed-up or misplaced row shows (tests/service/test_runtime_paths.py, tests/gpu)."""

from __future__ import annotations

import numpy as np

from service.served import ServedModel, Upscaler


def sample_rows(model: ServedModel, units: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A batch of `units` rows that tells rows apart: a generator's from distinct seeds (its
    warm-up rows), an upscaler's random tiles (its warm-up tiles are all zeros)."""
    if isinstance(model, Upscaler):
        rng = np.random.default_rng(seed + units)
        shape = (units, model.tile, model.tile, model.channels)
        return {"image": rng.integers(0, 256, shape, dtype=np.uint8)}
    return model.warm_up_rows(units)
