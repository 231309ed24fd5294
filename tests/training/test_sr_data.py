"""Super-resolution data: (LR, HR) pairs, the fixed splits, folders with bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.data.folder import FolderError
from training.sr.data import (
    SKIMAGE_TRAIN,
    SKIMAGE_VALIDATION,
    TEST_PHOTOS,
    VALIDATION_PHOTOS,
    SRPairSampler,
    load_hr_images,
    saturate,
    to_rgb,
)
from training.sr.degradation import Degradation, downsample, gaussian_blur


def _photo(seed: int, h: int, w: int) -> np.ndarray:
    """A smooth random RGB image (H, W, 3) uint8 with some structure to downsample."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC))


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    return {f"img{i}": _photo(i, 80 + 7 * i, 96 + 5 * i) for i in range(3)}


@pytest.mark.parametrize("scale,patch", [(2, 32), (4, 48)])
def test_pairs_have_the_right_shapes_scale_and_range(
    images: dict[str, np.ndarray], scale: int, patch: int
) -> None:
    sampler = SRPairSampler(images, patch, scale, Degradation())
    lr, hr = sampler.sample(5, torch.Generator().manual_seed(0))
    assert hr.shape == (5, 3, patch, patch)
    assert lr.shape == (5, 3, patch // scale, patch // scale)
    assert lr.dtype == hr.dtype == torch.float32
    assert float(lr.min()) >= 0 and float(lr.max()) <= 1 and float(hr.min()) >= 0 and float(hr.max()) <= 1
    # Without degradations the LR input is exactly the 8-bit bicubic downsampling of the HR crop.
    assert torch.equal(lr, downsample(hr, scale))
    assert torch.equal(lr * 255, (lr * 255).round())
    # HR crops are real 8-bit pixels of the source images.
    assert torch.equal(hr * 255, (hr * 255).round())


def test_pairs_are_deterministic_per_seed(images: dict[str, np.ndarray]) -> None:
    degradation = Degradation(blur=1.5, noise=0.05, jpeg=40)
    sampler = SRPairSampler(images, 32, 2, degradation)
    a = sampler.sample(6, torch.Generator().manual_seed(3))
    b = sampler.sample(6, torch.Generator().manual_seed(3))
    c = sampler.sample(6, torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_degradations_change_the_input_not_the_target(images: dict[str, np.ndarray]) -> None:
    clean = SRPairSampler(images, 32, 2, Degradation()).sample(8, torch.Generator().manual_seed(1))
    for degradation in (Degradation(blur=2.0), Degradation(noise=0.1), Degradation(jpeg=10)):
        lr, hr = SRPairSampler(images, 32, 2, degradation).sample(8, torch.Generator().manual_seed(1))
        assert torch.equal(hr, clean[1])  # the same crops
        assert lr.shape == clean[0].shape
        assert float((lr - clean[0]).abs().mean()) > 1e-3, degradation


def test_colour_augmentation_saturates_and_reorders_channels() -> None:
    hr = torch.tensor([0.2, 0.5, 0.4]).view(1, 3, 1, 1).expand(2, 3, 4, 4).contiguous()
    identity = torch.tensor([[0, 1, 2], [0, 1, 2]])
    assert torch.allclose(saturate(hr, torch.ones(2), identity), hr)  # gain 1, same order
    swapped = saturate(hr, torch.ones(2), torch.tensor([[2, 1, 0], [1, 0, 2]]))
    assert torch.allclose(swapped[0, :, 0, 0], torch.tensor([0.4, 0.5, 0.2]))
    assert torch.allclose(swapped[1, :, 0, 0], torch.tensor([0.5, 0.2, 0.4]))
    pushed = saturate(hr, torch.full((2,), 3.0), identity)[0, :, 0, 0]
    luma = 0.299 * 0.2 + 0.587 * 0.5 + 0.114 * 0.4
    expected = (luma + 3 * (torch.tensor([0.2, 0.5, 0.4]) - luma)).clamp(0, 1)
    assert torch.allclose(pushed, expected)
    assert float(pushed.max() - pushed.min()) > 0.7 and float(pushed.min()) == 0  # spread 0.3 -> 0.7, clipped


def test_colour_augmentation_is_off_by_default_and_a_share_when_on(images: dict[str, np.ndarray]) -> None:
    stream = torch.Generator().manual_seed(5)
    plain = SRPairSampler(images, 32, 2, Degradation(), colour_augment=0.0).sample(64, stream)
    # Off, it draws nothing: recipes without it keep the crops (and so the weights) they had before
    # it existed. Pixel sums and the next draw, as the sampler gave them then.
    assert int((plain[1] * 255).round().sum()) == 25050524 and int((plain[0] * 255).round().sum()) == 6262746
    assert int(torch.randint(0, 10**9, (1,), generator=stream)) == 172249247
    lr, hr = SRPairSampler(images, 32, 2, Degradation(), colour_augment=0.5).sample(
        64, torch.Generator().manual_seed(5)
    )
    assert float(hr.min()) >= 0 and float(hr.max()) <= 1
    assert torch.equal(lr, downsample(hr, 2))  # the LR input is made from the augmented crop
    spread = (hr.amax(1) - hr.amin(1)).mean(dim=(1, 2))  # (B,) mean chroma spread per crop
    # The same generator stream diverges after the first draw, so compare distributions: about
    # half of the crops are pushed towards saturation, so the mean spread grows.
    assert float(spread.mean()) > 1.2 * float((plain[1].amax(1) - plain[1].amin(1)).mean())
    with pytest.raises(ValueError, match="colour_augment"):
        SRPairSampler(images, 32, 2, Degradation(), colour_augment=1.5)


def test_blur_preserves_brightness_and_smooths() -> None:
    x = torch.rand(1, 3, 32, 32)
    blurred = gaussian_blur(x, 1.5)
    assert blurred.shape == x.shape
    assert abs(float(blurred.mean() - x.mean())) < 0.02
    assert float(blurred.std()) < float(x.std())
    assert torch.equal(gaussian_blur(x, 0.0), x)


def test_downsample_rejects_sizes_that_are_not_multiples_of_the_scale() -> None:
    with pytest.raises(ValueError, match="not a multiple"):
        downsample(torch.rand(1, 3, 33, 32), 2)


def test_sampler_rejects_images_smaller_than_the_patch(images: dict[str, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="smaller than the patch size"):
        SRPairSampler(images, 128, 2, Degradation())


def test_grayscale_alpha_and_float_images_become_rgb_uint8() -> None:
    assert to_rgb(np.zeros((4, 5), np.uint8)).shape == (4, 5, 3)
    assert to_rgb(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5, 3)
    rgb = to_rgb(np.full((2, 2), 0.5))
    assert rgb.dtype == np.uint8 and int(rgb[0, 0, 0]) == 128


def test_skimage_sets_are_fixed_and_disjoint() -> None:
    data = load_hr_images("sr_skimage", 96)
    assert list(data.train) == list(SKIMAGE_TRAIN)
    saturated = [f"photos/{n}.png" for n in ("freshflower", "garden", "greenmeadow", "raindrops")]
    assert list(data.validation) == [*SKIMAGE_VALIDATION, *saturated]
    assert "cat" not in data.train  # the same photo as the validation chelsea
    # The test set: the twelve bundled photographs; every photo listed with its source and licence.
    readme = (TEST_PHOTOS.parent / "README.md").read_text()
    photos = sorted(p.name for p in TEST_PHOTOS.glob("*.png"))
    assert len(photos) == 12 and sorted(data.test) == [f"photos/{p}" for p in photos]
    assert all(f"| `test/{p}` |" in readme for p in photos)
    assert all(f"| `validation/{p.name}` |" in readme for p in VALIDATION_PHOTOS.glob("*.png"))
    # The validation photos are what they are there for: much strongly saturated colour (HSV
    # saturation over 0.6 on 51-100 % of their pixels; scikit-image's chelsea: 17 %).
    for name in saturated:
        rgb = data.validation[name].astype(float)
        saturation = (rgb.max(2) - rgb.min(2)) / np.maximum(rgb.max(2), 1)
        assert (saturation > 0.6).mean() > 0.4, name
    assert data.describe("validation", list(data.validation)) == (
        "scikit-image chelsea, coffee, camera and photographs freshflower.png, garden.png, "
        "greenmeadow.png, raindrops.png of training/sr/photos/validation"
    )
    everything = [*data.train.values(), *data.validation.values(), *data.test.values()]
    for image in everything:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    for test_image in data.test.values():  # no test photo is a copy or crop of another image
        assert test_image.shape == (360, 480, 3)
        assert all(
            test_image.shape != other.shape or not np.array_equal(test_image, other)
            for other in [*data.train.values(), *data.validation.values()]
        )
    assert data.evaluation_set("test", 2) == dict(list(data.test.items())[:2])


def test_a_photo_in_both_bundled_sets_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import training.sr.data as sr_data

    validation = tmp_path / "validation"
    validation.mkdir()
    shutil.copy(TEST_PHOTOS / "fig.png", validation / "fig.png")  # a test photo, also validating
    monkeypatch.setattr(sr_data, "VALIDATION_PHOTOS", validation)
    with pytest.raises(FolderError, match=r"photos/fig\.png in both validation/ and test/"):
        load_hr_images("sr_skimage", 96)


def _write_folder(root: Path) -> None:
    root.mkdir()
    for i in range(6):
        Image.fromarray(_photo(i, 64, 72)).save(root / f"photo{i}.png")
    Image.fromarray(_photo(9, 64, 64)[:, :, 0]).save(root / "gray.png")  # grayscale -> RGB
    (sub := root / "nested").mkdir()
    Image.fromarray(_photo(7, 70, 64)).convert("RGBA").save(sub / "alpha.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    Image.fromarray(_photo(8, 20, 20)).save(root / "tiny.png")
    (root / "notes.txt").write_text("not an image")


def test_folder_split_is_fixed_and_bad_files_are_skipped(tmp_path: Path) -> None:
    _write_folder(tmp_path / "photos")
    data = load_hr_images(f"sr_folder:{tmp_path / 'photos'}", 32, "skip", 0.25)
    again = load_hr_images(f"sr_folder:{tmp_path / 'photos'}", 32, "skip", 0.25)
    sets = (data.train, data.validation, data.test)
    assert [list(s) for s in sets] == [list(s) for s in (again.train, again.validation, again.test)]
    assert sum(len(s) for s in sets) == 8  # 6 photos + gray + nested/alpha
    assert len(data.validation) == len(data.test) == 1  # 0.25 of 8 held out, halved
    assert len({*data.train, *data.validation, *data.test}) == 8  # disjoint
    assert "nested/alpha.png" in {**data.train, **data.validation, **data.test}
    assert sorted(Path(p).name for p in data.skipped_files) == ["broken.jpg", "tiny.png"]
    assert all(img.shape[2] == 3 for s in sets for img in s.values())


def test_folder_bad_files_error_policy_names_them(tmp_path: Path) -> None:
    _write_folder(tmp_path / "photos")
    with pytest.raises(
        FolderError, match=r"(?s)2 unusable image.*broken\.jpg.*tiny\.png.*smaller than one training crop"
    ):
        load_hr_images(f"sr_folder:{tmp_path / 'photos'}", 32, "error")


def test_folder_of_tiny_images_is_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "tiny"
    root.mkdir()
    for i in range(3):
        Image.fromarray(_photo(i, 16, 16)).save(root / f"{i}.png")
    with pytest.raises(FolderError, match="at least 64 pixels on the shorter side"):
        load_hr_images(f"sr_folder:{root}", 64)


@pytest.mark.parametrize(
    "setup,message",
    [
        ("missing", "data folder not found"),
        ("empty", "no images"),
        ("two", "need at least 3 readable images \\(training, validation and test\\), found 2"),
    ],
)
def test_folder_problems_are_clear_errors(tmp_path: Path, setup: str, message: str) -> None:
    root = tmp_path / "data"
    if setup != "missing":
        root.mkdir()
    if setup == "two":
        for i in range(2):
            Image.fromarray(_photo(i, 64, 64)).save(root / f"{i}.png")
    with pytest.raises(FolderError, match=message):
        load_hr_images(f"sr_folder:{root}", 32)


def test_folder_over_the_memory_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    root = tmp_path / "big"
    root.mkdir()
    for i in range(2):
        Image.fromarray(np.zeros((800, 800, 3), np.uint8)).save(root / f"{i}.png")
    with pytest.raises(FolderError, match="max_memory_mb = 1"):
        load_hr_images(f"sr_folder:{root}", 32, max_memory_mb=1)
