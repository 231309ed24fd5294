"""Quality metrics: known values on constructed inputs, and the image metrics' power to tell a
perfect generator from a broken one."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from training.config import load_config
from training.data import load_data
from training.data.toy import ring_modes
from training.evaluation import balanced_labels, evaluate, generate
from training.evaluation.bootstrap import bootstrap_interval
from training.evaluation.frechet import frechet_distance, precision_recall
from training.evaluation.matched import matched_quality
from training.evaluation.memorisation import memorisation, nearest_distances
from training.evaluation.per_class import per_class_quality
from training.evaluation.toy import mode_kl, toy_quality


def test_frechet_distance_known_values() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # a shift only moves the means: FD = ||c||^2
    c = np.array([1.0, 2.0, 0.0, -2.0])
    assert frechet_distance(a, a + c) == pytest.approx(9.0, rel=1e-6)
    # b = 2a: S_b = 4 S_a, (S_a S_b)^1/2 = 2 S_a, so FD = ||mu_a||^2 + tr(S_a + 4 S_a - 4 S_a)
    expected = float((a.mean(0) ** 2).sum() + np.trace(np.cov(a, rowvar=False)))
    assert frechet_distance(a, 2 * a) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(a, a[::-1]) == pytest.approx(0.0, abs=1e-6)  # order does not matter


def test_precision_and_recall() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 2))
    assert precision_recall(real, real.copy()) == (1.0, 1.0)
    far = real + 100.0
    assert precision_recall(real, far) == (0.0, 0.0)
    # a collapsed generator: every fake sits on one real point -> precise, no recall
    collapsed = np.repeat(real[:1], 300, axis=0)
    precision, recall = precision_recall(real, collapsed)
    assert precision == 1.0 and recall < 0.05
    with pytest.raises(ValueError, match="more than k=3"):
        precision_recall(real[:3], real[:3])


def test_toy_quality_counts_modes_and_high_quality_samples() -> None:
    modes = ring_modes(8, 2.0)
    exact = modes.repeat(100, 1)  # 800 samples, 100 on each mode
    assert toy_quality(exact, modes, 0.02) == {
        "modes": 8,
        "modes_total": 8,
        "hq_fraction": 1.0,
        "mode_kl": 0.0,
    }
    one_mode = modes[:1].repeat(800, 1)
    assert toy_quality(one_mode, modes, 0.02)["modes"] == 1
    # 4 std away from every mode: none is high quality
    off = modes.repeat(100, 1) * (1 + 4 * 0.02 / 2.0)
    assert toy_quality(off, modes, 0.02)["hq_fraction"] == 0.0
    # a mode with fewer than 20 high-quality samples is not recovered
    few = torch.cat([modes[:7].repeat(100, 1), modes[7:].repeat(19, 1)])
    assert toy_quality(few, modes, 0.02)["modes"] == 7


class Replay(nn.Module):
    """A 'generator' that returns real training images of the requested class: the ideal G."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, noise: bool = False) -> None:
        super().__init__()
        self.x, self.y, self.noise = x, y, noise
        self.config: Any = type("Config", (), {"latent_dim": 4, "num_classes": 10})()
        self.anchor = nn.Parameter(torch.zeros(()))  # so the module has a device

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        assert labels is not None
        if self.noise:
            return torch.rand((z.shape[0], *self.x.shape[1:])) * 2 - 1
        # the k-th request for class c gets the k-th training image of class c: all of them, in turn
        seen: dict[int, int] = {}
        picks = []
        for c in labels.tolist():
            members = torch.nonzero(self.y == c).flatten()
            picks.append(int(members[seen.get(c, 0) % len(members)]))
            seen[c] = seen.get(c, 0) + 1
        return self.x[picks]


@pytest.fixture(scope="module")
def digits16() -> Any:
    return load_data(load_config(None, ["data=digits", "resolution=16", "conditional=true", "model=dcgan"]))


def test_image_metrics_separate_an_ideal_generator_from_noise(digits16: Any) -> None:
    splits = digits16.splits
    ideal = evaluate(Replay(splits.train_x, splits.train_y), digits16, classifier_epochs=3, cas=True)
    noise = evaluate(
        Replay(splits.train_x, splits.train_y, noise=True), digits16, classifier_epochs=3, cas=True
    )
    assert ideal["feature_net"] == "classifier" and float(ideal["classifier_heldout_accuracy"]) > 0.85
    assert float(ideal["accuracy"]) > 0.7 and float(noise["accuracy"]) < 0.3
    assert float(ideal["fd_ratio"]) < 3 < float(noise["fd_ratio"])
    assert float(ideal["precision"]) > 0.8 and float(noise["precision"]) < 0.3
    assert float(ideal["recall"]) > 0.5 and float(noise["recall"]) < 0.1
    assert ideal["fd_real_baseline"] == noise["fd_real_baseline"]  # the same cached classifier
    # The "ideal" G replays its training images: the memorisation check sees every sample copied.
    assert ideal["memorised_share"] == 1.0 and ideal["nn_distance_ratio"] == 0.0
    # CAS: a classifier trained on the ideal G's images is the real one; on noise it learns nothing.
    assert float(ideal["cas"]) == pytest.approx(float(ideal["classifier_heldout_accuracy"]), abs=0.1)
    assert float(noise["cas"]) < 0.3
    assert noise["memorised_share"] == 0.0 and float(noise["nn_distance_ratio"]) > 1
    for key in ("recall", "accuracy", "fd", "fd_ratio"):  # each with its 95 % interval around it
        low, high = ideal[f"{key}_ci95"]
        assert low - 1e-9 <= float(ideal[key]) <= high + 1e-9, (key, low, high)
    # matched sizes: half the held-out images each, for G and for the real-vs-real baseline
    assert ideal["matched_size"] == digits16.splits.heldout_x.shape[0] // 2


def test_matched_sizes_judge_new_real_data_as_real() -> None:
    rng = np.random.default_rng(3)
    heldout, same = rng.normal(size=(120, 16)), rng.normal(size=(2000, 16))
    result = matched_quality(heldout, same, k=3)
    # New data from the real distribution scores as real data does, although there are 33 times
    # more samples than held-out images: both sides are compared at 60 against 60.
    assert result["matched_size"] == 60 and 0.8 < result["fd_ratio"] < 1.25
    low, high = result["fd_ratio_ci95"]
    assert low < 1 < high
    assert abs(result["recall"] - result["recall_real_baseline"]) < 0.1
    # Unmatched, the same comparison is off: FD of 120 vs 2000 against FD of 60 vs 60.
    assert frechet_distance(heldout, same) < 0.7 * result["fd_real_baseline"]
    shifted = matched_quality(heldout, same + 1.0, k=3)
    assert shifted["fd_ratio"] > 3 and shifted["recall"] < result["recall"]
    assert matched_quality(heldout, same, k=3) == result  # the same splits every time
    with pytest.raises(ValueError, match="at least 8 held-out images"):
        matched_quality(heldout[:7], same, k=3)
    with pytest.raises(ValueError, match="at least 60 generated samples"):
        matched_quality(heldout, same[:59], k=3)


def test_memorisation_of_new_real_images_is_the_baseline() -> None:
    torch.manual_seed(0)
    train, heldout, new = torch.rand(300, 1, 8, 8), torch.rand(200, 1, 8, 8), torch.rand(400, 1, 8, 8)
    result = memorisation(new, train, heldout)  # as novel as held-out data: about 5 % "memorised"
    assert 0.0 < result["memorised_share"] < 0.15 and 0.8 < result["nn_distance_ratio"] < 1.2
    near = train[: 400 % 300].repeat(2, 1, 1, 1)[:200] + 0.001  # near copies of training images
    assert memorisation(near, train, heldout)["memorised_share"] == 1.0
    assert nearest_distances(torch.zeros(1, 2), torch.tensor([[3.0, 4.0], [6.0, 8.0]])).tolist() == [5.0]


def test_unlabelled_data_uses_a_fixed_random_feature_network() -> None:
    data = load_data(load_config(None, ["data=digits", "resolution=16", "model=dcgan"]))
    splits = data.splits
    assert splits is not None
    # An unconditional replay generator: ignores labels, returns training images in order.
    replay = Replay(splits.train_x, splits.train_y)
    replay.config.num_classes = 0
    replay.forward = lambda z, labels=None: splits.train_x[: z.shape[0]]  # type: ignore[method-assign]
    first = evaluate(replay, data, classifier_epochs=1)
    assert "accuracy" not in first and first["fd_ratio"] < 3
    assert evaluate(replay, data, classifier_epochs=1)["fd"] == first["fd"]


def test_generate_is_deterministic_and_restores_training_mode() -> None:
    g = nn.Linear(4, 2)
    g.config = type("Config", (), {"latent_dim": 4})()  # type: ignore[assignment]
    wrapped = _TwoArg(g)
    wrapped.train()
    a = generate(wrapped, 10, seed=3)
    assert torch.equal(a, generate(wrapped, 10, seed=3)) and wrapped.training
    assert not torch.equal(a, generate(wrapped, 10, seed=4))
    assert balanced_labels(7, 3).tolist() == [0, 1, 2, 0, 1, 2, 0]


class _TwoArg(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.config = inner.config

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.inner(z)


def test_mode_kl_tells_balanced_modes_from_one_dominant_mode() -> None:
    assert mode_kl(torch.tensor([20, 20, 20, 20])) == pytest.approx(0.0)
    assert mode_kl(torch.tensor([80, 0, 0, 0])) == pytest.approx(math.log(4))
    # 8 modes all "recovered" (>= 20 samples each) yet far from balanced: the count hides it
    skewed = torch.tensor([2360, 20, 20, 20, 20, 20, 20, 20])
    assert 1.5 < mode_kl(skewed) < math.log(8)
    assert mode_kl(torch.zeros(8, dtype=torch.long)) == pytest.approx(math.log(8))


def test_per_class_quality_names_the_class_drawn_badly() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4.0, size=(3, 8))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 3
        return centres[y] + rng.normal(size=(n, 8)), y

    heldout, heldout_y = draw(90)
    train, train_y = draw(300)
    fake, fake_y = draw(300)
    fake[fake_y == 2] = centres[2]  # class 2 collapsed to one point; the pooled numbers barely move
    result = per_class_quality(heldout, heldout_y, train, train_y, fake, fake_y)
    assert set(result["per_class"]) == {"0", "1", "2"} and result["per_class"]["0"]["images"] == 30
    assert result["recall_worst_class_label"] == 2 and result["recall_worst_class"] < 0.1
    assert result["fd_ratio_worst_class_label"] == 2 and result["fd_ratio_worst_class"] > 3
    for c in ("0", "1"):
        assert result["per_class"][c]["recall"] > 0.6 and result["per_class"][c]["fd_ratio"] < 2
    assert per_class_quality(heldout[:2], heldout_y[:2], train, train_y, fake, fake_y) == {}


def test_bootstrap_intervals_cover_the_truth_and_repeat() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(loc=3.0, size=400)
    low, high = bootstrap_interval(lambda i: float(values[i].mean()), values.shape[0])
    assert low < 3.0 < high and high - low < 0.3  # about 4 standard errors (0.05) wide
    assert bootstrap_interval(lambda i: float(values[i].mean()), 400) == [low, high]  # seeded
    assert bootstrap_interval(lambda i: 7.0, 10) == [7.0, 7.0]
