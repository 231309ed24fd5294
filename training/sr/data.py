"""High-resolution images for super-resolution, in three disjoint sets: training images (random
(LR, HR) crops are cut from them), validation images (scored during training and by sweeps and
recipe choices) and test images (scored at the end only, so that no choice ever saw them).

`sr_skimage` trains on scikit-image's bundled images, validates on three more of them and tests on
the twelve photographs in training/sr/photos/ (from Debian packages; sources and licences in its
README). `sr_folder:PATH` splits a user's folder once, by a fixed seed, into the three sets.
Images are decoded once and kept in memory as 8-bit RGB; training pairs are cut on the fly, so
every step sees new crops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from training.data.folder import IMAGE_SUFFIXES, FolderError, report_bad_files
from training.sr.degradation import Degradation

# The fixed split of scikit-image's bundled images (only those that ship inside the package; no
# downloads). The validation three chose this project's recipes: a cat's fur (chelsea; `cat` is
# the same photo, so it is left out), a table of objects (coffee) and the grayscale cameraman.
SKIMAGE_VALIDATION = ("chelsea", "coffee", "camera")
SKIMAGE_TRAIN = (
    "astronaut",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "stereo_motorcycle",
    "coins",
    "brick",
    "grass",
    "gravel",
    "moon",
    "page",
    "text",
    "clock",
    "cell",
)
TEST_PHOTOS = Path(__file__).with_name("photos")
HELDOUT_SPLIT_SEED = 20170515


@dataclass
class HRImages:
    """(H, W, 3) uint8 RGB images, by name, in three disjoint sets."""

    name: str  # "sr_skimage" or "sr_folder:PATH"
    train: dict[str, np.ndarray]
    validation: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    skipped_files: list[str] = field(default_factory=list)

    def evaluation_set(self, which: str, limit: int = 0) -> dict[str, np.ndarray]:
        """The first `limit` images (0: all of them) of "validation" or "test", in their fixed order."""
        images = {"validation": self.validation, "test": self.test}[which]
        return dict(list(images.items())[: limit or None])

    def describe(self, which: str, names: list[str]) -> str:
        """What the scored images `names` of "validation" or "test" are, in words (for manifests
        and model cards)."""
        plural = "" if len(names) == 1 else "s"
        if self.name == "sr_skimage":
            if which == "validation":
                return "scikit-image " + ", ".join(names)
            return f"{len(names)} photograph{plural} of training/sr/photos (from Debian packages)"
        return f"{len(names)} image{plural} of {self.name.removeprefix('sr_folder:')} ({which} split)"

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": "sr",
            "value_range": [0.0, 1.0],
            "channels": 3,
            "train_images": len(self.train),
            "validation_images": sorted(self.validation),
            "test_images": sorted(self.test),
            "skipped_files": len(self.skipped_files),
        }


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Any bundled or decoded image -> (H, W, 3) uint8: grayscale is repeated, alpha dropped."""
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    elif image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def load_skimage(name: str) -> np.ndarray:
    import skimage.data

    image = getattr(skimage.data, name)()
    if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
        image = image[0]
    return to_rgb(image)


def load_rgb_file(path: Path) -> np.ndarray:
    """Decode with EXIF orientation applied -> (H, W, 3) uint8."""
    from PIL import Image, ImageOps

    with Image.open(path) as raw:
        img = ImageOps.exif_transpose(raw).convert("RGB")
        return np.asarray(img, dtype=np.uint8).copy()


def load_hr_images(
    data: str,
    min_side: int,
    bad_files: str = "skip",
    heldout_fraction: float = 0.2,
    max_memory_mb: int = 4096,
) -> HRImages:
    """Every image must have a shorter side of at least `min_side` pixels (one training crop).
    A folder's held-out share is split evenly into validation and test images."""
    if data == "sr_skimage":
        images = {n: load_skimage(n) for n in [*SKIMAGE_TRAIN, *SKIMAGE_VALIDATION]}
        test_images, bad = _load_folder(TEST_PHOTOS, max_memory_mb)
        if bad or not test_images:
            raise FolderError(f"{TEST_PHOTOS}: the bundled test photos are missing or damaged; reinstall")
        images |= {f"photos/{n}": image for n, image in test_images.items()}
        train, validation = list(SKIMAGE_TRAIN), list(SKIMAGE_VALIDATION)
        test = [f"photos/{n}" for n in test_images]
    elif data.startswith("sr_folder:"):
        root = Path(data.removeprefix("sr_folder:")).expanduser()
        images, bad = _load_folder(root, max_memory_mb)
        train, validation, test = _split(sorted(images), heldout_fraction, root)
    else:
        raise FolderError(f"unknown super-resolution data {data!r}")
    for name in list(images):
        h, w = images[name].shape[:2]
        if min(h, w) < min_side:
            bad.append((name, f"{w}x{h} is smaller than one training crop ({min_side}x{min_side})"))
            del images[name]
    report_bad_files(bad, bad_files, "unusable")
    sets = [[n for n in names if n in images] for names in (train, validation, test)]
    if not all(sets):
        raise FolderError(
            f"{data}: need at least one training, one validation and one test image of at least "
            f"{min_side} pixels on the shorter side; usable: {len(sets[0])} for training, "
            f"{len(sets[1])} for validation, {len(sets[2])} for testing"
        )
    train_set, validation_set, test_set = ({n: images[n] for n in names} for names in sets)
    return HRImages(data, train_set, validation_set, test_set, [p for p, _ in bad])


def _load_folder(root: Path, max_memory_mb: int) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]]:
    from PIL import Image

    if not root.is_dir():
        raise FolderError(f"data folder not found: {root}")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FolderError(f"{root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    # Headers first: a folder too large for memory is refused before minutes of decoding.
    total = 0
    for path in paths:
        try:
            with Image.open(path) as img:
                total += img.width * img.height * 3
        except Exception:
            continue  # reported below, when decoding fails
    if total > max_memory_mb * 2**20:
        raise FolderError(
            f"{root}: the images need {total / 2**20:.0f} MB decoded, over max_memory_mb = {max_memory_mb}; "
            "raise max_memory_mb or train on a subset"
        )
    images: dict[str, np.ndarray] = {}
    bad: list[tuple[str, str]] = []
    for path in paths:
        key = str(path.relative_to(root))
        try:
            images[key] = load_rgb_file(path)
        except Exception as exc:  # PIL raises many types for broken files
            bad.append((str(path), f"{type(exc).__name__}: {exc}"))
    return images, bad


def _split(names: list[str], fraction: float, root: Path) -> tuple[list[str], list[str], list[str]]:
    """A fixed split by file name that does not depend on the run's seed: training, validation
    and test names. The held-out `fraction` is halved between validation and test."""
    if len(names) < 3:
        raise FolderError(
            f"{root}: need at least 3 readable images (training, validation and test), found {len(names)}"
        )
    order = torch.randperm(len(names), generator=torch.Generator().manual_seed(HELDOUT_SPLIT_SEED)).tolist()
    n_heldout = min(len(names) - 1, max(2, round(len(names) * fraction)))
    n_test = n_heldout // 2
    test = sorted(names[i] for i in order[:n_test])
    validation = sorted(names[i] for i in order[n_test:n_heldout])
    held = {*test, *validation}
    return [n for n in names if n not in held], validation, test


class SRPairSampler:
    """Random (LR, HR) pairs: an image drawn uniformly, a random HR crop, a random flip and
    90-degree rotation, then the LR input made from it. All randomness comes from `generator`."""

    def __init__(self, images: dict[str, np.ndarray], patch_size: int, scale: int, degradation: Degradation):
        if patch_size % scale:
            raise ValueError(f"patch_size {patch_size} is not a multiple of scale {scale}")
        # (3, H, W) uint8 tensors; cropping them is cheap, converting a crop to float is per step.
        self.images = [torch.tensor(img).permute(2, 0, 1).contiguous() for img in images.values()]
        for name, img in zip(images, self.images, strict=True):
            if min(img.shape[1:]) < patch_size:
                raise ValueError(f"{name}: smaller than the patch size {patch_size}")
        self.patch_size, self.scale, self.degradation = patch_size, scale, degradation

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """-> LR (B, 3, p/s, p/s) and HR (B, 3, p, p), float in [0, 1]."""
        p = self.patch_size
        picks = torch.randint(0, len(self.images), (batch,), generator=generator).tolist()
        crops = []
        for index in picks:
            img = self.images[index]
            _, h, w = img.shape
            y = int(torch.randint(0, h - p + 1, (1,), generator=generator))
            x = int(torch.randint(0, w - p + 1, (1,), generator=generator))
            crop = img[:, y : y + p, x : x + p]
            flip = int(torch.randint(0, 2, (1,), generator=generator))
            turns = int(torch.randint(0, 4, (1,), generator=generator))
            if flip:
                crop = crop.flip(2)
            crops.append(torch.rot90(crop, turns, dims=(1, 2)))
        hr = torch.stack(crops).float() / 255  # (B, 3, p, p)
        lr = self.degradation(hr, self.scale, generator)  # (B, 3, p/s, p/s)
        return lr, hr
