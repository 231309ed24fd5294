"""The failure-mode detectors, fed synthetic training signals."""

from __future__ import annotations

import math

import pytest
import torch

from training.health import HealthMonitor, class_diversity, diversity, worst_class_ratio


def point(
    g_loss: float = 1.0, g_grad: float = 1.0, d_acc: float = 0.6, spread: float = 1.0
) -> dict[str, float]:
    return {
        "g_loss": g_loss,
        "d_loss": 1.0,
        "g_grad_norm": g_grad,
        "d_accuracy": d_acc,
        "diversity_ratio": spread,
    }


def feed(monitor: HealthMonitor, points: list[dict[str, float]]) -> list[str]:
    return [w.kind for p in points for w in monitor.update(p)]


def test_a_healthy_run_raises_nothing() -> None:
    monitor = HealthMonitor(window=10)
    # G's loss drifts down slowly with small noise; gradients and diversity stay normal
    points = [
        point(g_loss=2.0 - 0.02 * i + 0.01 * math.sin(i), g_grad=1.0 + 0.1 * math.cos(i)) for i in range(40)
    ]
    assert feed(monitor, points) == []


def test_vanishing_gradients_is_reported_once_and_rearmed() -> None:
    monitor = HealthMonitor(window=10)
    assert feed(monitor, [point() for _ in range(5)]) == []
    dead = point(g_grad=1e-4, d_acc=1.0)
    assert feed(monitor, [dead]) == ["vanishing_gradients"]
    assert feed(monitor, [dead, dead]) == []  # still active: not repeated
    assert feed(monitor, [point()]) == []  # cleared
    assert feed(monitor, [dead]) == ["vanishing_gradients"]


def test_small_gradients_alone_are_not_vanishing() -> None:
    # G's gradient may be small simply because D is confused (accuracy ~ 50 %): not a failure.
    monitor = HealthMonitor(window=10)
    feed(monitor, [point() for _ in range(5)])
    assert feed(monitor, [point(g_grad=1e-4, d_acc=0.5)]) == []


def test_saturated_minimax_is_vanishing_from_the_start() -> None:
    # D rejects every fake from the first logged point on: no healthy early level to compare to,
    # but with the minimax loss D(G(z)) ~ 0 means G's gradient is ~0.
    saturated = {**point(g_grad=0.02, d_acc=1.0), "d_fake": 0.001}
    assert feed(HealthMonitor(window=10, saturating=True), [saturated]) == ["vanishing_gradients"]
    assert feed(HealthMonitor(window=10, saturating=False), [saturated] * 6) == []


def test_mode_collapse_from_the_diversity_ratio() -> None:
    monitor = HealthMonitor(window=10)
    # the first few points are G's initialisation, always narrow: not reported
    assert feed(monitor, [point(spread=0.05) for _ in range(5)]) == []
    assert feed(monitor, [point(spread=0.9), point(spread=0.5)]) == []
    warnings = monitor.update(point(spread=0.1))
    assert [w.kind for w in warnings] == ["mode_collapse"]
    assert "10%" in warnings[0].message
    # hovering around the threshold is one episode, not a warning per dip
    assert feed(monitor, [point(spread=0.4), point(spread=0.2), point(spread=0.5), point(spread=0.1)]) == []
    assert feed(monitor, [point(spread=0.9), point(spread=0.2)]) == ["mode_collapse"]
    record = warnings[0].record(1234)
    assert record["event"] == "warning" and record["step"] == 1234 and record["kind"] == "mode_collapse"


def test_oscillating_losses_are_non_convergence_but_a_trend_is_not() -> None:
    monitor = HealthMonitor(window=10)
    swings = [point(g_loss=0.2 if i % 2 else 3.0) for i in range(10)]
    assert feed(monitor, swings) == ["non_convergence"]
    monitor = HealthMonitor(window=10)
    falling = [point(g_loss=5.0 - 0.5 * i) for i in range(10)]
    assert feed(monitor, falling) == []


def test_diversity_is_the_mean_pairwise_distance() -> None:
    assert diversity(torch.tensor([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx(5.0)
    # three points on a line at 0, 1, 3: distances 1, 3, 2 -> mean 2
    assert diversity(torch.tensor([[0.0], [1.0], [3.0]])) == pytest.approx(2.0)
    assert diversity(torch.ones(10, 1, 4, 4)) == 0.0


def test_collapse_inside_each_class_is_flagged_though_the_pooled_spread_is_fine() -> None:
    # Ten classes, each drawn as one fixed image by the generator: the pooled spread is that of
    # ten different images, the spread within each class nil.
    torch.manual_seed(0)
    centres = torch.randn(10, 16)
    labels = torch.arange(100) % 10
    real = centres[labels] + 0.3 * torch.randn(100, 16)
    collapsed = centres[labels].clone()
    collapsed[labels == 7] += 0.3 * torch.randn(int((labels == 7).sum()), 16)  # all but class 7
    pooled = diversity(collapsed) / diversity(real)
    assert pooled > 0.8  # the pooled check sees nothing wrong
    real_spread, fake_spread = class_diversity(real, labels), class_diversity(collapsed, labels)
    assert sorted(real_spread) == list(range(10))
    worst = worst_class_ratio(fake_spread, real_spread)
    assert worst is not None and worst[1] == 0.0 and worst[0] != 7
    assert class_diversity(real[:1], labels[:1]) == {}  # a class needs two samples to have a spread

    monitor = HealthMonitor(window=10)
    healthy = {**point(spread=pooled), "class_diversity_ratio": 0.9, "class_diversity_worst": 3}
    assert feed(monitor, [healthy] * 6) == []
    warnings = monitor.update(
        {**healthy, "class_diversity_ratio": worst[1], "class_diversity_worst": worst[0]}
    )
    assert [w.kind for w in warnings] == ["mode_collapse"]
    assert f"within class {worst[0]}" in warnings[0].message
