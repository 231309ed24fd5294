"""SRResNet, the patch discriminator and the SR losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.models import build_discriminator, build_generator
from training.models.srresnet import (
    PatchDiscriminator,
    PatchDiscriminatorConfig,
    SRResNetConfig,
    SRResNetGenerator,
)
from training.sr import losses


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("size", [(7, 9), (16, 16), (1, 3)])
def test_generator_upscales_any_size(scale: int, size: tuple[int, int]) -> None:
    model = SRResNetGenerator(SRResNetConfig(scale=scale, width=8, blocks=2))
    out = model(torch.rand(2, 3, *size))
    assert out.shape == (2, 3, size[0] * scale, size[1] * scale)


def test_untrained_generator_is_exactly_bicubic() -> None:
    """The body's last layer starts at zero, so step 0 is the bicubic baseline, not noise."""
    model = SRResNetGenerator(SRResNetConfig(scale=2, width=8, blocks=1))
    x = torch.rand(1, 3, 10, 12)
    expected = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    assert torch.allclose(model(x), expected)


def test_receptive_radius_bounds_the_context() -> None:
    """Changing one LR pixel changes no output pixel farther than the radius (on random weights)."""
    torch.manual_seed(0)
    config = SRResNetConfig(scale=2, width=4, blocks=2)
    model = SRResNetGenerator(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    x = torch.rand(1, 3, 41, 41)
    y = x.clone()
    y[0, :, 20, 20] += 1.0
    with torch.no_grad():
        changed = (model(x) - model(y)).abs().sum(1)[0] > 0  # (82, 82)
    rows, cols = torch.nonzero(changed, as_tuple=True)
    radius = config.receptive_radius()
    # output pixel i covers LR coordinate (i + 0.5) / 2 - 0.5
    lr_rows, lr_cols = (rows.float() + 0.5) / 2 - 0.5, (cols.float() + 0.5) / 2 - 0.5
    assert float((lr_rows - 20).abs().max()) <= radius and float((lr_cols - 20).abs().max()) <= radius
    assert float((lr_rows - 20).abs().max()) > 2  # the net really spreads the change


def test_generator_rejects_unsupported_scales() -> None:
    with pytest.raises(ValueError, match="scale must be 2 or 4"):
        SRResNetGenerator(SRResNetConfig(scale=3))


def test_registry_builds_the_sr_networks() -> None:
    g = build_generator("srresnet", {"scale": 2, "channels": 3, "width": 8, "blocks": 1})
    d = build_discriminator("patch", {"channels": 3, "width": 8, "spectral_norm": True})
    assert isinstance(g, SRResNetGenerator) and isinstance(d, PatchDiscriminator)


def test_patch_discriminator_scores_patches_and_returns_features() -> None:
    d = PatchDiscriminator(PatchDiscriminatorConfig(width=8))
    logits, features = d(torch.rand(2, 3, 48, 40))
    assert logits.shape == (2, 1, 6, 5)
    assert len(features) == 6 and features[-1].shape == (2, 32, 6, 5)


def test_pixel_losses() -> None:
    sr, hr = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    assert float(losses.pixel_loss("l1", sr, hr)) == pytest.approx(0.5)
    assert float(losses.pixel_loss("charbonnier", sr, hr)) == pytest.approx(0.5, abs=1e-5)
    assert float(losses.pixel_loss("charbonnier", hr, hr)) == pytest.approx(losses.CHARBONNIER_EPS)
    with pytest.raises(ValueError, match="unknown pixel loss"):
        losses.pixel_loss("l2", sr, hr)


@pytest.mark.parametrize("kind", ["nonsaturating", "hinge", "relativistic"])
def test_adversarial_losses_reward_the_right_side(kind: str) -> None:
    confident_real, confident_fake = torch.full((2, 1, 3, 3), 4.0), torch.full((2, 1, 3, 3), -4.0)
    # D wins when it scores HR high and SR low; G wins when its SR scores high.
    d_good = losses.discriminator_loss(kind, confident_real, confident_fake)
    d_bad = losses.discriminator_loss(kind, confident_fake, confident_real)
    g_good = losses.generator_loss(kind, confident_fake, confident_real)
    g_bad = losses.generator_loss(kind, confident_real, confident_fake)
    assert float(d_good) < float(d_bad)
    assert float(g_good) < float(g_bad)


def test_feature_loss_is_zero_for_equal_features_and_ignores_real_gradients() -> None:
    fake = [torch.rand(2, 4, 3, 3, requires_grad=True)]
    real = [torch.rand(2, 4, 3, 3, requires_grad=True)]
    assert float(losses.feature_loss([r.detach() for r in real], real)) == 0.0
    losses.feature_loss(fake, real).backward()
    assert fake[0].grad is not None and real[0].grad is None
