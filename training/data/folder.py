"""A user's folder of images: flat (unconditional) or one sub-folder per class.

Every file is decoded once, up front, so an unreadable file is found before training starts,
never hours into a run. Images are resized (shorter side) and centre-cropped to the resolution.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from training.data.base import DataInfo, ImageSplits, split_heldout

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


class FolderError(ValueError):
    """The folder cannot be used as it is; the message says why and where."""


def find_images(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """Image paths, their class indices and the class names (sub-folder names, sorted)."""
    if not root.is_dir():
        raise FolderError(f"data folder not found: {root}")
    direct = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    class_dirs = [d for d in class_dirs if any(_images_under(d))]
    if direct and class_dirs:
        raise FolderError(
            f"{root}: has both images and class sub-folders ({', '.join(d.name for d in class_dirs)}); "
            "put every image in a class folder, or none"
        )
    if direct:
        return direct, [0] * len(direct), []
    paths: list[Path] = []
    labels: list[int] = []
    for index, d in enumerate(class_dirs):
        found = sorted(_images_under(d))
        paths += found
        labels += [index] * len(found)
    if not paths:
        raise FolderError(f"{root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    return paths, labels, [d.name for d in class_dirs]


def _images_under(d: Path) -> list[Path]:
    return [p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]


def load_image(path: Path, resolution: int, channels: int) -> np.ndarray:
    """Decode, apply EXIF orientation, resize the shorter side, centre-crop -> (C, R, R) uint8."""
    from PIL import Image, ImageOps

    with Image.open(path) as raw:
        img: Image.Image = ImageOps.exif_transpose(raw)
        img = img.convert("L" if channels == 1 else "RGB")
        w, h = img.size
        if w == 0 or h == 0:
            raise ValueError("zero-sized image")
        scale = resolution / min(w, h)
        size = (max(resolution, round(w * scale)), max(resolution, round(h * scale)))
        img = img.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
        left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
        img = img.crop((left, top, left + resolution, top + resolution))
        arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def report_bad_files(bad: Sequence[tuple[object, str]], policy: str, what: str) -> None:
    """List the files that cannot be used: a warning (policy "skip") or a FolderError ("error")."""
    if not bad:
        return
    listing = "\n".join(f"  {p}: {why}" for p, why in bad)
    if policy == "error":
        raise FolderError(f'{len(bad)} {what} image(s) (set bad_files = "skip" to skip them):\n{listing}')
    log.warning("skipping %d %s image(s):\n%s", len(bad), what, listing)


def load_folder_splits(
    root: str | Path,
    resolution: int,
    channels: int,
    conditional: bool,
    bad_files: str,
    heldout_fraction: float,
) -> ImageSplits:
    root = Path(root).expanduser()
    paths, labels, class_names = find_images(root)
    if conditional and len(class_names) < 2:
        raise FolderError(
            f"{root}: conditional training needs one sub-folder per class (at least 2), "
            f"found {len(class_names)}"
        )
    arrays: list[np.ndarray] = []
    kept: list[int] = []
    bad: list[tuple[Path, str]] = []
    for path, label in zip(paths, labels, strict=True):
        try:
            arrays.append(load_image(path, resolution, channels))
            kept.append(label)
        except Exception as exc:  # PIL raises many types for broken files
            bad.append((path, f"{type(exc).__name__}: {exc}"))
    report_bad_files(bad, bad_files, "unreadable")
    if len(arrays) < 2:
        raise FolderError(f"{root}: only {len(arrays)} readable image(s); need at least 2")
    # (N, C, R, R) uint8 -> float in [-1, 1]
    x = torch.from_numpy(np.stack(arrays)).float().div(127.5).sub(1.0)
    y = torch.tensor(kept, dtype=torch.long) if class_names else None
    info = DataInfo(
        f"folder:{root}",
        "image",
        (channels, resolution, resolution),
        class_names,
        skipped_files=[str(p) for p, _ in bad],
    )
    return split_heldout(info, x, y, heldout_fraction)
