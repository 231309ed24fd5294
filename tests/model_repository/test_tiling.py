"""Tiled inference: equal to untiled inference, fixed tile shapes, seam-free blending, odd sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_repository.tiling import (
    RowBlender,
    TileBlender,
    axis_starts,
    extract_tiles,
    plan_tiles,
    tiled_upscale,
)
from training.models.srresnet import SRResNetConfig, SRResNetGenerator
from training.sr.evaluation import torch_predict


def _random_model(scale: int, seed: int = 0) -> SRResNetGenerator:
    """Random weights everywhere (the tail too, which starts at zero when trained)."""
    torch.manual_seed(seed)
    model = SRResNetGenerator(SRResNetConfig(scale=scale, width=8, blocks=2)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("size", [(37, 53), (61, 29), (5, 7)])
def test_tiled_equals_untiled_on_random_weights(scale: int, size: tuple[int, int]) -> None:
    model = _random_model(scale)
    radius = model.config.receptive_radius()
    predict = torch_predict(model, torch.device("cpu"))
    image = np.random.default_rng(1).random((3, *size), dtype=np.float32)
    whole = predict(image[None])[0]
    # overlap // 4 >= the receptive radius: every kept pixel saw all the context it depends on.
    tiled = tiled_upscale(predict, image, scale, tile=4 * radius + 9, overlap=4 * radius, batch=3)
    assert tiled.shape == whole.shape == (3, size[0] * scale, size[1] * scale)
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-5 * float(np.abs(whole).max()))


def test_too_small_an_overlap_shows_in_random_weights() -> None:
    """The equality above is not vacuous: without enough context, tiles disagree with the whole."""
    model = _random_model(2)
    predict = torch_predict(model, torch.device("cpu"))
    image = np.random.default_rng(1).random((3, 40, 40), dtype=np.float32)
    tiled = tiled_upscale(predict, image, 2, tile=16, overlap=4)
    assert float(np.abs(tiled - predict(image[None])[0]).max()) > 1e-2


def _nearest(tiles: np.ndarray) -> np.ndarray:
    return tiles.repeat(3, axis=2).repeat(3, axis=3)


@pytest.mark.parametrize("tile,overlap", [(8, 0), (8, 1), (8, 3), (9, 4), (16, 15)])
def test_blending_is_exact_for_a_pointwise_model_with_any_overlap(tile: int, overlap: int) -> None:
    image = np.random.default_rng(2).random((2, 23, 31), dtype=np.float32)
    out = tiled_upscale(_nearest, image, 3, tile=tile, overlap=overlap, batch=4)
    np.testing.assert_allclose(out, _nearest(image[None])[0], rtol=1e-6)


def test_every_tile_has_the_same_shape_and_the_last_is_flush() -> None:
    plan = plan_tiles(100, 37, tile=32, overlap=8)
    assert (plan.tile_h, plan.tile_w) == (32, 32)
    assert plan.ys == (0, 24, 48, 68) and plan.xs == (0, 5)
    assert axis_starts(32, 32, 8) == (0,)
    seen: list[tuple[int, ...]] = []

    def record(tiles: np.ndarray) -> np.ndarray:
        seen.append(tiles.shape)
        return _nearest(tiles)

    tiled_upscale(record, np.zeros((3, 100, 37), np.float32), 3, tile=32, overlap=8, batch=3)
    assert seen == [(3, 3, 32, 32)] * 2 + [(2, 3, 32, 32)]


def test_an_image_smaller_than_a_tile_is_one_tile_of_its_own_size() -> None:
    plan = plan_tiles(5, 300, tile=64, overlap=16)
    assert (plan.tile_h, plan.tile_w) == (5, 64)
    assert plan.ys == (0,)
    one = plan_tiles(1, 1, tile=64, overlap=16)
    assert one.origins == [(0, 0)] and (one.tile_h, one.tile_w) == (1, 1)


@pytest.mark.parametrize(
    "image,tile,overlap,message",
    [
        (np.zeros((3, 0, 5), np.float32), 8, 2, "empty image"),
        (np.zeros((3, 9, 9), np.float32), 8, 8, "overlap < tile"),
        (np.zeros((9, 9), np.float32), 8, 2, r"one \(C, h, w\) image"),
    ],
)
def test_bad_inputs_are_clear_errors(image: np.ndarray, tile: int, overlap: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiled_upscale(_nearest, image, 3, tile=tile, overlap=overlap)


def test_a_predict_that_changes_the_batch_is_caught() -> None:
    with pytest.raises(ValueError, match="predict returned shape"):
        tiled_upscale(lambda t: _nearest(t)[:1], np.zeros((3, 20, 20), np.float32), 3, tile=8, overlap=2)


@pytest.mark.parametrize(
    ("h", "w", "tile", "overlap", "scale"), [(50, 37, 16, 8, 2), (9, 70, 16, 4, 4), (5, 5, 16, 8, 2)]
)
def test_row_blender_matches_tile_blender(h: int, w: int, tile: int, overlap: int, scale: int) -> None:
    rng = np.random.default_rng(h * w)
    plan = plan_tiles(h, w, tile, overlap)
    outputs = {
        origin: rng.integers(0, 256, (plan.tile_h * scale, plan.tile_w * scale, 3)).astype(np.uint8)
        for origin in plan.origins
    }
    reference = TileBlender(plan, scale, 3)
    rows = RowBlender(plan, scale, 3)
    for r, y in enumerate(plan.ys):
        for x in plan.xs:
            reference.add(y, x, outputs[(y, x)])
        rows.add_row(r, np.stack([outputs[(y, x)] for x in plan.xs]))
    expected = np.clip(np.rint(reference.result()), 0, 255).astype(np.uint8)
    diff = np.abs(rows.result().astype(int) - expected.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # float32 vs float64 rounding only
    with pytest.raises(ValueError, match="in order"):
        RowBlender(plan, scale, 3).add_row(len(plan.ys) - 1 if len(plan.ys) > 1 else 1, np.zeros((1,)))


def test_extract_tiles_by_row() -> None:
    image = np.arange(40 * 30 * 3, dtype=np.uint8).reshape(40, 30, 3)
    plan = plan_tiles(40, 30, 16, 4)
    everything = extract_tiles(image, plan)
    per_row = np.concatenate([extract_tiles(image, plan, r) for r in range(len(plan.ys))])
    assert np.array_equal(everything, per_row) and everything.shape[1:] == (16, 16, 3)
