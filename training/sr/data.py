"""High-resolution images for super-resolution, in three disjoint sets: training images (random
(LR, HR) crops are cut from them), validation images (scored during training and by sweeps and
recipe choices) and test images (scored at the end only, so that no choice ever saw them).

`sr_skimage` trains on scikit-image's bundled images, validates on three more of them and four
photographs of saturated colours (training/sr/photos/validation/) and tests on the twelve
photographs in training/sr/photos/test/ (all from Debian packages; sources and licences in the
photos' README). `sr_folder:PATH` splits a user's folder once, by a fixed seed, into the three sets.
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
# Four photographs of saturated colours (PHOTOS / "validation") join them in the validation set.
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
PHOTOS = Path(__file__).with_name("photos")
TEST_PHOTOS, VALIDATION_PHOTOS = PHOTOS / "test", PHOTOS / "validation"
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
                skimage = [n for n in names if not n.startswith("photos/")]
                photos = [n.removeprefix("photos/") for n in names if n.startswith("photos/")]
                parts = ["scikit-image " + ", ".join(skimage)] if skimage else []
                if photos:
                    parts.append("photographs " + ", ".join(photos) + " of training/sr/photos/validation")
                return " and ".join(parts)
            return f"{len(names)} photograph{plural} of training/sr/photos/test (from Debian packages)"
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
        validation_photos = _load_bundled_photos(VALIDATION_PHOTOS, max_memory_mb)
        test_photos = _load_bundled_photos(TEST_PHOTOS, max_memory_mb)
        if shared := sorted(validation_photos.keys() & test_photos.keys()):
            raise FolderError(f"{PHOTOS}: {', '.join(shared)} in both validation/ and test/; reinstall")
        images |= validation_photos | test_photos
        train = list(SKIMAGE_TRAIN)
        validation, test = [*SKIMAGE_VALIDATION, *validation_photos], list(test_photos)
        bad: list[tuple[str, str]] = []
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


def _load_bundled_photos(folder: Path, max_memory_mb: int) -> dict[str, np.ndarray]:
    """The photographs shipped in `folder`, named photos/FILE."""
    photos, bad = _load_folder(folder, max_memory_mb)
    if bad or not photos:
        raise FolderError(f"{folder}: the bundled photos are missing or damaged; reinstall")
    return {f"photos/{n}": image for n, image in photos.items()}


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


# Luma weights (BT.601) about which a colour augmentation scales saturation.
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
MAX_SATURATION_GAIN = 3.0


def saturate(hr: torch.Tensor, gain: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Colour augmentation of HR crops: (B, 3, p, p) in [0, 1] with each crop's chroma scaled by
    `gain` (B,) about its luma, clipped to [0, 1] (so strong gains make the flat, fully saturated
    patches that scikit-image's training images lack), channels reordered by `order` (B, 3)."""
    luma = (hr * _LUMA.to(hr)).sum(1, keepdim=True)  # (B, 1, p, p)
    pushed = (luma + gain.view(-1, 1, 1, 1) * (hr - luma)).clamp(0, 1)
    return torch.gather(pushed, 1, order.view(-1, 3, 1, 1).expand_as(pushed))


class SRPairSampler:
    """Random (LR, HR) pairs: an image drawn uniformly, a random HR crop, a random flip and
    90-degree rotation, for a `colour_augment` share of crops a colour augmentation (`saturate`),
    then the LR input made from it. All randomness comes from `generator`."""

    def __init__(
        self,
        images: dict[str, np.ndarray],
        patch_size: int,
        scale: int,
        degradation: Degradation,
        colour_augment: float = 0.0,
    ):
        if patch_size % scale:
            raise ValueError(f"patch_size {patch_size} is not a multiple of scale {scale}")
        if not 0 <= colour_augment <= 1:
            raise ValueError(f"colour_augment {colour_augment} is not a share in [0, 1]")
        # (3, H, W) uint8 tensors; cropping them is cheap, converting a crop to float is per step.
        self.images = [torch.tensor(img).permute(2, 0, 1).contiguous() for img in images.values()]
        for name, img in zip(images, self.images, strict=True):
            if min(img.shape[1:]) < patch_size:
                raise ValueError(f"{name}: smaller than the patch size {patch_size}")
        self.patch_size, self.scale, self.degradation = patch_size, scale, degradation
        self.colour_augment = colour_augment

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
        if self.colour_augment > 0:
            # Drawn only when on, so recipes without it keep their random stream (and weights).
            chosen = torch.rand(batch, generator=generator) < self.colour_augment
            gain = 1 + (MAX_SATURATION_GAIN - 1) * torch.rand(batch, generator=generator)
            order = torch.argsort(torch.rand(batch, 3, generator=generator), dim=1)
            hr = torch.where(chosen.view(-1, 1, 1, 1), saturate(hr, gain, order), hr)
        lr = self.degradation(hr, self.scale, generator)  # (B, 3, p/s, p/s)
        return lr, hr
