"""The bundled models loaded as the service loads them (no HTTP), and batch rows to compare two of
their runs on: rows that differ from each other, so that a mixed-up or misplaced row shows. Shared
by tests/service/test_runtime_paths.py (on CPU) and tests/gpu (on the device)."""

from __future__ import annotations

from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np

from service.config import Settings
from service.lifecycle.loading import load_model
from service.metrics import ServiceMetrics
from service.served.admission import Shedding
from service.served.model import ServedModel
from service.served.providers import choose_providers
from service.served.upscaler import Upscaler

MODELS = Path(__file__).resolve().parents[1] / "models"
BUNDLED = sorted(p.name for p in MODELS.iterdir() if (p / "1" / "manifest.json").exists())


def load(name: str, pool: Executor, **settings: Any) -> ServedModel:
    """A bundled model's version 1, loaded as the service loads it."""
    chosen = Settings(models_dir=MODELS, **settings)
    return load_model(MODELS, name, 1, chosen, ServiceMetrics(), pool, Shedding(), choose_providers(chosen))


def sample_rows(model: ServedModel, units: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A batch of `units` rows that tells rows apart: a generator's from distinct seeds (its
    warm-up rows), an upscaler's random tiles (its warm-up tiles are all zeros)."""
    if isinstance(model, Upscaler):
        rng = np.random.default_rng(seed + units)
        shape = (units, model.tile, model.tile, model.channels)
        return {"image": rng.integers(0, 256, shape, dtype=np.uint8)}
    return model.warm_up_inputs(units)
