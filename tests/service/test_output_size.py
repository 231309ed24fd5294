"""The output size of an upscale (scale, width/height with fit) and the model factor a path
starts from, without a server."""

from __future__ import annotations

import numpy as np
import pytest

from contract.errors import InvalidRequest
from service.images.output_size import OutputSize, choose_scale, plan_output_size, resize


def size(**asked: object) -> OutputSize:
    return plan_output_size(400, 300, native=2, largest=4, **asked)  # type: ignore[arg-type]


def test_no_size_asked_is_the_models_own_factor() -> None:
    assert (size().width, size().height, size().factor) == (800, 600, 2.0)
    assert plan_output_size(400, 300, native=4, largest=4).width == 1600


@pytest.mark.parametrize(
    ("asked", "out", "resized", "crop"),
    [
        ({"scale": 2.5}, (1000, 750), (1000, 750), (0, 0)),
        ({"scale": 1}, (400, 300), (400, 300), (0, 0)),
        ({"scale": 4}, (1600, 1200), (1600, 1200), (0, 0)),
        ({"width": 1000}, (1000, 750), (1000, 750), (0, 0)),  # the other side keeps the aspect
        ({"height": 450}, (600, 450), (600, 450), (0, 0)),
        ({"width": 1000, "height": 1000}, (1000, 750), (1000, 750), (0, 0)),  # contain is the default
        ({"width": 1000, "height": 1000, "fit": "contain"}, (1000, 750), (1000, 750), (0, 0)),
        ({"width": 1000, "height": 1000, "fit": "cover"}, (1000, 1000), (1333, 1000), (166, 0)),
        ({"width": 1000, "height": 500, "fit": "exact"}, (1000, 500), (1000, 500), (0, 0)),
    ],
)
def test_sizes(
    asked: dict[str, object], out: tuple[int, int], resized: tuple[int, int], crop: tuple[int, int]
) -> None:
    got = size(**asked)
    assert (got.width, got.height) == out
    assert (got.resize_w, got.resize_h) == resized
    assert (got.left, got.top) == crop


def test_the_factor_a_path_is_chosen_for_is_the_larger_axis() -> None:
    assert size(width=1000, height=500, fit="exact").factor == 2.5
    assert size(width=1000, height=1000, fit="cover").factor == pytest.approx(1000 / 300)


@pytest.mark.parametrize(
    ("asked", "message"),
    [
        ({"scale": 4.5}, "scale is 4.5; an upscale enlarges by 1 to 4"),
        ({"scale": 0.5}, "scale is 0.5"),
        ({"width": 399}, "width asks for a factor of 0.998 of the 400x300 input"),
        ({"width": 1700}, "1 to 4"),
        ({"width": 500, "height": 200, "fit": "exact"}, "height asks for a factor of 0.667"),
        ({"width": 3000, "height": 1000, "fit": "cover"}, "fit cover"),
        ({"scale": 2, "width": 800}, "either scale, or width and/or height"),
        ({"width": 800, "fit": "cover"}, "fit applies when both width and height are given"),
    ],
)
def test_sizes_out_of_range_are_refused_with_the_reason(asked: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message.replace(".", r"\.").replace("(", r"\(")):
        size(**asked)


@pytest.mark.parametrize(
    ("factor", "scales", "chosen"),
    [
        (1.5, [2, 4], 2),
        (2, [2, 4], 2),
        (3.75, [2, 4], 2),
        (4, [2, 4], 4),
        (3, [4], 4),
        (1.2, [3], 3),
        (8, [2, 4], 4),
    ],
)
def test_the_path_starts_from_the_largest_factor_not_above_the_one_asked(
    factor: float, scales: list[int], chosen: int
) -> None:
    assert choose_scale(factor, scales) == chosen


def test_resize_keeps_16_bit_precision_and_crops_for_cover() -> None:
    ramp = np.linspace(0, 65535, 64 * 64, dtype=np.float64).reshape(64, 64, 1).astype(np.uint16)
    out = resize(ramp, OutputSize(96, 96, 96, 96, 1.5))
    assert out.dtype == np.uint16 and out.shape == (96, 96, 1)
    # a 16-bit ramp stays a 16-bit ramp: far more than 256 levels
    assert len(np.unique(out)) > 4000
    flat = np.full((10, 20, 3), 77, np.uint8)
    covered = resize(flat, OutputSize(30, 30, 60, 30, 3.0, left=15, top=0))
    assert covered.shape == (30, 30, 3) and (covered == 77).all()
    same = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    assert resize(same, OutputSize(2, 2, 2, 2, 1.0)) is same
