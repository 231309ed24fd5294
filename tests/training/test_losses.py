"""GAN objectives and stabilizers against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from training import regularizers as reg
from training.losses import discriminator_loss, generator_loss

LN = math.log
# Logits chosen so that D(x) = sigmoid(logit) is a simple fraction.
REAL = torch.tensor([0.0, LN(3)])  # D(x)    = 0.5, 0.75
FAKE = torch.tensor([-LN(3), 0.0])  # D(G(z)) = 0.25, 0.5


def test_minimax_and_nonsaturating_discriminator_loss() -> None:
    # -mean log D(x) - mean log(1 - D(G(z))) = (ln 2 + ln 4/3)/2 + (ln 4/3 + ln 2)/2 = ln 8/3
    for kind in ("minimax", "nonsaturating"):
        assert discriminator_loss(kind, REAL, FAKE).item() == pytest.approx(LN(8 / 3), rel=1e-6)


def test_one_sided_label_smoothing_only_changes_the_real_term() -> None:
    # real target 0.9: 0.9 * -log D(x) + 0.1 * -log(1 - D(x)); the fake term is untouched.
    real_term = (LN(2) + 0.9 * LN(4 / 3) + 0.1 * LN(4)) / 2
    fake_term = (LN(4 / 3) + LN(2)) / 2
    got = discriminator_loss("nonsaturating", REAL, FAKE, label_smoothing=0.1).item()
    assert got == pytest.approx(real_term + fake_term, rel=1e-6)


def test_generator_losses() -> None:
    # minimax: mean log(1 - D(G(z))) = (ln 3/4 + ln 1/2)/2; nonsaturating: mean -log D(G(z))
    assert generator_loss("minimax", FAKE).item() == pytest.approx((LN(0.75) + LN(0.5)) / 2, rel=1e-6)
    assert generator_loss("nonsaturating", FAKE).item() == pytest.approx((LN(4) + LN(2)) / 2, rel=1e-6)


def test_wasserstein_and_hinge_losses() -> None:
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-2.0, 0.0])
    assert discriminator_loss("wgan", real, fake).item() == pytest.approx(-3.0)
    assert discriminator_loss("wgan-gp", real, fake).item() == pytest.approx(-3.0)
    assert generator_loss("wgan", fake).item() == pytest.approx(1.0)
    # hinge: mean relu(1 - [0.5, 2]) + mean relu(1 + [-2, 0.5]) = 0.25 + 0.75
    real, fake = torch.tensor([0.5, 2.0]), torch.tensor([-2.0, 0.5])
    assert discriminator_loss("hinge", real, fake).item() == pytest.approx(1.0)
    assert generator_loss("hinge", fake).item() == pytest.approx(0.75)


def test_minimax_generator_gradient_vanishes_where_nonsaturating_does_not() -> None:
    # The reason for the modified loss (Goodfellow 2014): when D confidently rejects G(z)
    # (logit -10), d/dlogit log(1 - D) = -D(G(z)) ~ -4.5e-5, while d/dlogit -log D = D - 1 ~ -1.
    for kind, expected in (("minimax", -torch.sigmoid(torch.tensor(-10.0))), ("nonsaturating", -1.0)):
        logit = torch.tensor([-10.0], requires_grad=True)
        generator_loss(kind, logit).backward()
        assert logit.grad is not None
        assert logit.grad.item() == pytest.approx(float(expected), rel=1e-3)


def test_losses_stay_finite_for_extreme_logits() -> None:
    big = torch.tensor([1e4, -1e4])
    for kind in ("minimax", "nonsaturating", "wgan", "wgan-gp", "hinge"):
        assert torch.isfinite(discriminator_loss(kind, big, -big))
        assert torch.isfinite(generator_loss(kind, big))


def test_unknown_loss_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown loss"):
        discriminator_loss("lsgan", REAL, FAKE)
    with pytest.raises(ValueError, match="unknown loss"):
        generator_loss("lsgan", FAKE)


def _linear_critic() -> nn.Linear:
    # D(x) = 3 x0 + 4 x1 + 1: its input gradient is (3, 4) everywhere, norm 5.
    critic = nn.Linear(2, 1)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[3.0, 4.0]]))
        critic.bias.fill_(1.0)
    return critic


def test_gradient_penalty_of_a_linear_critic() -> None:
    critic = _linear_critic()
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    points = reg.interpolate(real, fake, gen)
    grad = reg.input_gradient(critic(points).squeeze(1), points)
    assert torch.allclose(grad, torch.tensor([3.0, 4.0]).expand(8, 2))
    penalty = reg.gradient_penalty(grad)
    assert penalty.item() == pytest.approx((5.0 - 1.0) ** 2)
    # The penalty is differentiable w.r.t. the critic: d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    penalty.backward()
    assert critic.weight.grad is not None
    assert torch.allclose(critic.weight.grad, torch.tensor([[2 * 4 * 3 / 5, 2 * 4 * 4 / 5]]))


def test_r1_penalty_of_a_linear_critic() -> None:
    critic = _linear_critic()
    real = torch.randn(5, 2, requires_grad=True)
    grad = reg.input_gradient(critic(real).squeeze(1), real)
    assert reg.r1_penalty(grad).item() == pytest.approx(25.0)


def test_interpolates_lie_between_real_and_fake() -> None:
    real, fake = torch.zeros(100, 3, 4, 4), torch.ones(100, 3, 4, 4)
    points = reg.interpolate(real, fake, torch.Generator().manual_seed(1))
    assert points.requires_grad
    # one mixing weight per sample, shared by all its pixels
    assert torch.allclose(points.amin(dim=(1, 2, 3)), points.amax(dim=(1, 2, 3)))
    assert points.min() >= 0 and points.max() <= 1 and points.std() > 0.1


def test_instance_noise_anneals_linearly_to_zero() -> None:
    assert reg.instance_noise_std(0.2, 100, 0) == pytest.approx(0.2)
    assert reg.instance_noise_std(0.2, 100, 50) == pytest.approx(0.1)
    assert reg.instance_noise_std(0.2, 100, 500) == 0.0
    assert reg.instance_noise_std(0.2, 0, 10_000) == pytest.approx(0.2)  # constant
    assert reg.instance_noise_std(0.0, 100, 0) == 0.0
    x = torch.zeros(10_000)
    assert reg.add_instance_noise(x, 0.0, torch.Generator()) is x
    noisy = reg.add_instance_noise(x, 0.5, torch.Generator().manual_seed(0))
    assert noisy.std().item() == pytest.approx(0.5, rel=0.05)


def test_weight_clipping() -> None:
    critic = _linear_critic()
    reg.clip_weights(critic, 0.01)
    assert all(p.abs().max() <= 0.01 for p in critic.parameters())
