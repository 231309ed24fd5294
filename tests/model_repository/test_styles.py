"""The style generator's caller-side rules (model_repository/styles.py): truncation, mixing layers,
noise images from seeds, and the checks on a client's w."""

from __future__ import annotations

import numpy as np
import pytest

from model_repository.latents import latent_from_seed
from model_repository.styles import MAX_W_ABS, StyleSpec, check_ws, noise_from_seed

SHAPES = ((1, 4, 4), (1, 8, 8), (1, 8, 8))


def spec(classes: int = 2) -> StyleSpec:
    w_avg = np.arange(classes * 3, dtype=np.float32).reshape(classes, 3)
    return StyleSpec(
        w_dim=3,
        num_ws=4,
        w_avg=w_avg,
        noise_names=("noise_0", "noise_1", "noise_2"),
        noise_shapes=SHAPES,
        groups={"coarse": (0, 2), "middle": (2, 3), "fine": (3, 4)},
    )


def test_truncation_per_class_and_per_row() -> None:
    s = spec()
    w = np.ones((3, 3), np.float32) * 10
    labels = np.array([0, 1, 1])
    assert np.array_equal(s.truncate(w, labels, 1.0), w)
    assert np.array_equal(s.truncate(w, labels, 0.0), s.w_avg[labels])
    rows = s.truncate(w, labels, np.array([0.0, 0.5, 1.0]))
    assert np.allclose(rows, [s.w_avg[0], (w[1] + s.w_avg[1]) / 2, w[2]])
    unconditional = spec(classes=1)
    assert np.array_equal(unconditional.truncate(w, None, 0.0), np.repeat(unconditional.w_avg, 3, axis=0))


def test_layers_from_row() -> None:
    s = spec()
    assert s.layers_from_row("coarse").tolist() == [True, True, False, False]
    assert s.layers_from_row("fine").tolist() == [False, False, False, True]
    assert not s.layers_from_row(0).any() and s.layers_from_row(4).all()
    assert s.layers_from_row(1).tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="from 0 to 4"):
        s.layers_from_row(5)
    with pytest.raises(ValueError, match="not one of coarse, middle, fine"):
        s.layers_from_row("finest")


def test_noise_from_a_seed_is_its_own_stream() -> None:
    first = noise_from_seed(7, SHAPES)
    assert [n.shape for n in first] == list(SHAPES) and all(n.dtype == np.float32 for n in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, noise_from_seed(7, SHAPES), strict=True))
    assert not np.array_equal(first[0], noise_from_seed(8, SHAPES)[0])
    # seed 7's noise is not seed 7's latent
    assert not np.allclose(first[0].ravel(), latent_from_seed(7, 16))
    rows = spec().noise([7, None])
    assert np.array_equal(rows[1][0], first[1]) and not rows[0][1].any()
    with pytest.raises(ValueError, match="noise seed"):
        noise_from_seed(-1, SHAPES)


def test_a_clients_w_is_checked() -> None:
    assert check_ws(np.ones(3), 4, 3).shape == (4, 3)
    assert check_ws(np.ones((4, 3), np.float16), 4, 3).dtype == np.float32
    for bad, message in (
        (np.ones(5), r"expected shape \(3,\) or \(4, 3\), got \(5,\)"),
        (np.ones((4, 3), np.int64), "floating-point"),
        (np.array([1.0, np.nan, 0.0]), "NaN or infinite"),
        (np.array([1e300, 0.0, 0.0]), "NaN or infinite"),  # inf once float32
        (np.array([MAX_W_ABS * 2, 0.0, 0.0]), "within"),
    ):
        with pytest.raises(ValueError, match=message):
            check_ws(bad, 4, 3)
