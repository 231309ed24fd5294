"""Does G copy its training images? Each sample's nearest training image (L2 in pixel space),
against how close real held-out images come to the training set."""

from __future__ import annotations

import torch

HELDOUT_QUANTILE = 0.05  # the threshold: as close as the closest 5 % of held-out images come
CHUNK = 256


@torch.no_grad()
def nearest_distances(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(N, ...) and (M, ...) -> (N,) L2 distance of each row of x to its nearest reference row."""
    ref = reference.flatten(1).double()
    out = [torch.cdist(part.flatten(1).double(), ref).min(dim=1).values for part in x.split(CHUNK)]
    return torch.cat(out)


def memorisation(fake: torch.Tensor, train: torch.Tensor, heldout: torch.Tensor) -> dict[str, float]:
    """memorised_share: the share of samples closer to a training image than all but the closest
    5 % of real held-out images are (so about 0.05 for a G as novel as new real data, up to 1 for
    one that replays its training set); nn_distance_ratio: the median sample's distance to its
    nearest training image over the median held-out image's (below 1: closer than new data)."""
    held = nearest_distances(heldout, train)
    threshold = torch.quantile(held, HELDOUT_QUANTILE)
    samples = nearest_distances(fake, train)
    return {
        "memorised_share": float((samples < threshold).double().mean()),
        "memorised_share_baseline": HELDOUT_QUANTILE,
        "nn_distance_ratio": float(samples.median() / held.median().clamp_min(1e-12)),
    }
