"""Data sources: toy mixtures, scikit-learn digits, and a user's folder of images."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.config import load_config
from training.data import FolderError, load_data
from training.data.digits import load_digits_splits
from training.data.folder import load_folder_splits
from training.data.toy import toy_sampler


def test_ring8_and_grid25_mixtures() -> None:
    for name, modes, std, extent in (("ring8", 8, 0.02, 2.0), ("grid25", 25, 0.05, 4.0)):
        sampler = toy_sampler(name)
        assert sampler.info.modes is not None and sampler.info.modes.shape == (modes, 2)
        assert sampler.info.mode_std == std
        x, y = sampler.sample(20_000, torch.Generator().manual_seed(0))
        assert x.shape == (20_000, 2) and y is None
        # every sample sits near one centre, every centre gets its share
        dist, which = torch.cdist(x, sampler.info.modes).min(dim=1)
        assert dist.max() < 6 * std
        counts = torch.bincount(which, minlength=modes).float()
        assert counts.min() > 0.7 * 20_000 / modes
        assert (x.abs().max() - extent) < 6 * std
    assert torch.allclose(toy_sampler("ring8", radius=1.0).info.modes.norm(dim=1), torch.ones(8))  # type: ignore[union-attr]


def test_samplers_are_driven_by_the_given_generator() -> None:
    sampler = toy_sampler("grid25")
    a, _ = sampler.sample(64, torch.Generator().manual_seed(5))
    b, _ = sampler.sample(64, torch.Generator().manual_seed(5))
    c, _ = sampler.sample(64, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_digits_are_scaled_resized_and_split_once() -> None:
    splits = load_digits_splits(32, 0.2)
    assert splits.train_x.shape[1:] == (1, 32, 32)
    assert splits.train_x.shape[0] + splits.heldout_x.shape[0] == 1797
    assert splits.heldout_x.shape[0] == round(1797 * 0.2)
    assert splits.train_x.min() == -1 and splits.train_x.max() == 1
    assert splits.train_y is not None and set(splits.train_y.tolist()) == set(range(10))
    assert splits.info.class_names == [str(i) for i in range(10)]
    # the split is fixed: the same images are held out on every call, whatever the seed
    torch.manual_seed(123)
    again = load_digits_splits(32, 0.2)
    assert torch.equal(again.heldout_x, splits.heldout_x)
    assert splits.fingerprint() == again.fingerprint()
    # no held-out image is in the training split
    flat_train = {row.numpy().tobytes() for row in splits.train_x.flatten(1)}
    duplicates = sum(row.numpy().tobytes() in flat_train for row in splits.heldout_x.flatten(1))
    assert duplicates <= 5  # load_digits has a handful of identical images, nothing more
    assert load_digits_splits(16, 0.2).train_x.shape[1:] == (1, 16, 16)


def _write(path: Path, size: tuple[int, int] = (40, 30), color: int | tuple[int, int, int] = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "RGB" if isinstance(color, tuple) else "L"
    Image.new(mode, size, color).save(path)
    return path


def test_flat_folder_rgb_and_grayscale(tmp_path: Path) -> None:
    _write(tmp_path / "a.png", (40, 30), (255, 0, 0))
    _write(tmp_path / "b.jpg", (30, 60), (0, 255, 0))
    _write(tmp_path / "c.webp", (16, 16), (0, 0, 255))
    (tmp_path / "notes.txt").write_text("not an image")
    rgb = load_folder_splits(tmp_path, 16, 3, False, "error", 0.34)
    assert rgb.train_x.shape[1:] == (3, 16, 16) and rgb.train_x.shape[0] + rgb.heldout_x.shape[0] == 3
    assert rgb.train_y is None and rgb.info.class_names == []
    everything = torch.cat([rgb.train_x, rgb.heldout_x])
    assert everything.min() >= -1 and everything.max() <= 1
    # pure red stays pure red after resizing and cropping
    reds = [img for img in everything if img[0].mean() > 0.9]
    assert len(reds) == 1 and torch.allclose(reds[0][1:], torch.tensor(-1.0), atol=0.02)
    gray = load_folder_splits(tmp_path, 8, 1, False, "error", 0.34)
    assert gray.train_x.shape[1:] == (1, 8, 8)


def test_non_square_images_are_centre_cropped(tmp_path: Path) -> None:
    # 60x20, white between x=14 and x=46: the centre 20x20 crop is all white
    arr = np.zeros((20, 60), dtype=np.uint8)
    arr[:, 14:46] = 255
    Image.fromarray(arr).save(tmp_path / "wide.png")
    _write(tmp_path / "other.png")
    splits = load_folder_splits(tmp_path, 8, 1, False, "error", 0.5)
    images = torch.cat([splits.train_x, splits.heldout_x])
    assert any(bool((img > 0.95).all()) for img in images)


def test_class_subfolders_give_labels(tmp_path: Path) -> None:
    for i in range(3):
        _write(tmp_path / "cats" / f"{i}.png", color=10)
        _write(tmp_path / "dogs" / "nested" / f"{i}.png", color=240)
    cfg = load_config(None, [f"data=folder:{tmp_path}", "conditional=true", "resolution=8", "model=dcgan"])
    data = load_data(cfg)
    assert data.info.class_names == ["cats", "dogs"] and data.info.num_classes == 2
    splits = data.splits
    assert splits is not None and splits.train_y is not None and splits.heldout_y is not None
    x = torch.cat([splits.train_x, splits.heldout_x])
    y = torch.cat([splits.train_y, splits.heldout_y])
    assert torch.equal(x[y == 0].mean(dim=(1, 2, 3)) < 0, torch.ones(int((y == 0).sum()), dtype=torch.bool))
    assert bool((x[y == 1] > 0).all())
    batch, labels = data.sampler.sample(16, torch.Generator().manual_seed(0))
    assert batch.shape == (16, 1, 8, 8) and labels is not None and labels.shape == (16,)


def test_corrupt_file_is_skipped_and_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for i in range(4):
        _write(tmp_path / f"ok{i}.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    truncated = tmp_path / "truncated.jpg"
    _write(truncated)
    truncated.write_bytes(truncated.read_bytes()[:40])
    with caplog.at_level(logging.WARNING):
        splits = load_folder_splits(tmp_path, 8, 1, False, "skip", 0.25)
    assert splits.train_x.shape[0] + splits.heldout_x.shape[0] == 4
    assert sorted(splits.info.skipped_files) == sorted([str(broken), str(truncated)])
    assert str(broken) in caplog.text and str(truncated) in caplog.text


def test_corrupt_file_is_rejected_when_asked(tmp_path: Path) -> None:
    for i in range(3):
        _write(tmp_path / f"ok{i}.png")
    (tmp_path / "broken.jpg").write_bytes(b"garbage")
    with pytest.raises(FolderError, match=r"(?s)1 unreadable image\(s\).*broken\.jpg"):
        load_folder_splits(tmp_path, 8, 1, False, "error", 0.25)


@pytest.mark.parametrize(
    ("layout", "conditional", "message"),
    [
        ({}, False, "no images"),
        ({"a.png": 1, "cls/b.png": 1}, False, "both images and class sub-folders"),
        ({"a.png": 1, "b.png": 1}, True, "conditional training needs one sub-folder per class"),
        ({"a.png": 1}, False, "only 1 readable image"),
    ],
)
def test_unusable_folders(tmp_path: Path, layout: dict[str, int], conditional: bool, message: str) -> None:
    for name in layout:
        _write(tmp_path / name)
    with pytest.raises(FolderError, match=message):
        load_folder_splits(tmp_path, 8, 1, conditional, "skip", 0.2)
    with pytest.raises(FolderError, match="data folder not found"):
        load_folder_splits(tmp_path / "missing", 8, 1, False, "skip", 0.2)
