"""Data sources named by the config's `data` key."""

from __future__ import annotations

from dataclasses import dataclass

from training.config import TOY_DATA, TrainConfig
from training.data.base import DataInfo, ImageSplits, Sampler, TensorSampler
from training.data.digits import load_digits_splits
from training.data.folder import FolderError, load_folder_splits
from training.data.toy import toy_sampler

__all__ = ["DataInfo", "FolderError", "ImageSplits", "LoadedData", "Sampler", "load_data"]


@dataclass
class LoadedData:
    sampler: Sampler  # training batches
    info: DataInfo
    splits: ImageSplits | None  # image data: the fixed train / held-out split (for evaluation)


def load_data(cfg: TrainConfig) -> LoadedData:
    if cfg.data in TOY_DATA:
        toy = toy_sampler(cfg.data, cfg.toy_radius)
        return LoadedData(toy, toy.info, None)
    if cfg.data == "digits":
        splits = load_digits_splits(cfg.resolution, cfg.heldout_fraction)
    else:
        splits = load_folder_splits(
            cfg.data.removeprefix("folder:"),
            cfg.resolution,
            cfg.channels,
            cfg.conditional,
            cfg.bad_files,
            cfg.heldout_fraction,
        )
    # A conditional model needs labels; an unconditional one ignores them (digits without labels).
    labels = splits.train_y if cfg.conditional else None
    sampler = TensorSampler(splits.info, splits.train_x, labels)
    return LoadedData(sampler, splits.info, splits)
