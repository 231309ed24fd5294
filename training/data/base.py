"""What every data source provides: a sampler for training and fixed sets for evaluation."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch


@dataclass
class DataInfo:
    name: str  # e.g. "ring8", "digits", "folder:/data/faces"
    kind: str  # "toy" (points in R^2) or "image" (N, C, H, W) in [-1, 1]
    shape: tuple[int, ...]  # one sample's shape
    class_names: list[str] = field(default_factory=list)  # empty: no labels
    # toy data only: mixture centres (M, 2) and the std of each component
    modes: torch.Tensor | None = None
    mode_std: float = 0.0
    skipped_files: list[str] = field(default_factory=list)  # folder data: unreadable, skipped

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "shape": list(self.shape),
            "class_names": list(self.class_names),
            "value_range": [-1.0, 1.0] if self.kind == "image" else None,
            "skipped_files": len(self.skipped_files),
        }


class Sampler:
    """Draws training batches from an explicit torch.Generator, so resuming is exact."""

    info: DataInfo

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError


class TensorSampler(Sampler):
    """Uniform sampling with replacement from an in-memory tensor of images (and labels)."""

    def __init__(self, info: DataInfo, x: torch.Tensor, y: torch.Tensor | None) -> None:
        self.info, self.x, self.y = info, x, y

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = torch.randint(0, self.x.shape[0], (batch,), generator=generator)
        return self.x[idx], (self.y[idx] if self.y is not None else None)


@dataclass
class ImageSplits:
    """Image data split once, deterministically, into train and held-out parts."""

    info: DataInfo
    train_x: torch.Tensor  # (N, C, H, W) float32 in [-1, 1]
    train_y: torch.Tensor | None  # (N,) int64 or None
    heldout_x: torch.Tensor
    heldout_y: torch.Tensor | None

    def fingerprint(self) -> str:
        """Identifies the exact training images (for the cached evaluation classifier)."""
        h = hashlib.sha256()
        h.update(self.train_x.numpy().tobytes())
        if self.train_y is not None:
            h.update(self.train_y.numpy().tobytes())
        return h.hexdigest()[:16]


def split_heldout(info: DataInfo, x: torch.Tensor, y: torch.Tensor | None, fraction: float) -> ImageSplits:
    """A fixed split that does not depend on the run's seed: held-out images are always the same."""
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"{info.name}: need at least 2 images, found {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(20140610))
    n_heldout = min(n - 1, max(1, round(n * fraction)))
    held, train = order[:n_heldout], order[n_heldout:]
    return ImageSplits(
        info,
        x[train].contiguous(),
        y[train].contiguous() if y is not None else None,
        x[held].contiguous(),
        y[held].contiguous() if y is not None else None,
    )
