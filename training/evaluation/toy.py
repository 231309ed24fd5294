"""Mode coverage on 2-D mixtures, as in VEEGAN / PacGAN."""

from __future__ import annotations

import torch

MIN_SAMPLES_PER_MODE = 20  # a mode counts as recovered with at least this many HQ samples


def toy_quality(samples: torch.Tensor, modes: torch.Tensor, std: float) -> dict[str, float]:
    """samples (N, 2), modes (M, 2). A sample is high quality within 3 std of its nearest mode.

    A mode is recovered when at least MIN_SAMPLES_PER_MODE high-quality samples fall on it (of the
    usual 2,500), so a few stray points do not count as covering a mode.
    """
    dist = torch.cdist(samples.double(), modes.double())  # (N, M)
    nearest, which = dist.min(dim=1)
    high_quality = nearest <= 3 * std
    counts = torch.bincount(which[high_quality], minlength=modes.shape[0])
    recovered = int((counts >= MIN_SAMPLES_PER_MODE).sum())
    return {
        "modes": recovered,
        "modes_total": int(modes.shape[0]),
        "hq_fraction": float(high_quality.double().mean()),
    }
