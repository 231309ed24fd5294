"""Network shapes, conditioning, and rebuilding G from a saved generator file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.models import (
    GENERATOR_FORMAT,
    GENERATOR_FORMAT_VERSION,
    build_discriminator,
    build_generator,
    config_to_dict,
    load_generator,
)
from training.models.dcgan import DCGANDiscriminatorConfig, DCGANGeneratorConfig
from training.models.mlp import MLPDiscriminatorConfig, MLPGeneratorConfig


@pytest.mark.parametrize("resolution", [8, 16, 32, 64])
@pytest.mark.parametrize("upsample", ["nearest", "transposed"])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes(resolution: int, upsample: str, channels: int) -> None:
    g = build_generator(
        "dcgan",
        config_to_dict(DCGANGeneratorConfig(16, channels, resolution, width=8, upsample=upsample)),
    )
    d = build_discriminator("dcgan", config_to_dict(DCGANDiscriminatorConfig(channels, resolution, width=8)))
    images = g(torch.randn(5, 16))
    assert images.shape == (5, channels, resolution, resolution)
    assert images.min() >= -1 and images.max() <= 1  # tanh output, the data's range
    assert d(images).shape == (5,)


@pytest.mark.parametrize("spectral_norm", [False, True])
def test_conditional_networks_use_their_labels(spectral_norm: bool) -> None:
    torch.manual_seed(0)
    g = build_generator("dcgan", config_to_dict(DCGANGeneratorConfig(16, 1, 16, width=8, num_classes=10)))
    d = build_discriminator(
        "dcgan",
        config_to_dict(DCGANDiscriminatorConfig(1, 16, width=8, num_classes=10, spectral_norm=spectral_norm)),
    )
    g.eval()
    z = torch.randn(4, 16)
    zeros, nines = torch.zeros(4, dtype=torch.long), torch.full((4,), 9)
    assert g(z, zeros).shape == (4, 1, 16, 16)
    assert not torch.allclose(g(z, zeros), g(z, nines))
    x = torch.randn(4, 1, 16, 16)
    assert d(x, zeros).shape == (4,)
    assert not torch.allclose(d(x, zeros), d(x, nines))
    with pytest.raises(ValueError, match="needs labels"):
        g(z)
    with pytest.raises(ValueError, match="needs labels"):
        d(x)


def test_mlp_shapes_for_points_and_images() -> None:
    g = build_generator("mlp", config_to_dict(MLPGeneratorConfig(8, (2,), hidden=16)))
    d = build_discriminator("mlp", config_to_dict(MLPDiscriminatorConfig((2,), hidden=16)))
    assert g(torch.randn(7, 8)).shape == (7, 2)
    assert d(torch.randn(7, 2)).shape == (7,)
    g = build_generator(
        "mlp",
        config_to_dict(MLPGeneratorConfig(8, (1, 8, 8), hidden=16, num_classes=3, output_activation="tanh")),
    )
    d = build_discriminator(
        "mlp", config_to_dict(MLPDiscriminatorConfig((1, 8, 8), hidden=16, num_classes=3))
    )
    labels = torch.tensor([0, 1, 2])
    out = g(torch.randn(3, 8), labels)
    assert out.shape == (3, 1, 8, 8) and out.abs().max() <= 1
    assert d(out, labels).shape == (3,)


def test_spectral_norm_bounds_each_layer() -> None:
    d = build_discriminator(
        "dcgan", config_to_dict(DCGANDiscriminatorConfig(1, 16, width=8, spectral_norm=True))
    )
    d.train()
    x = torch.randn(4, 1, 16, 16)
    for _ in range(30):  # power iterations converge while training
        d(x)
    linear = d.head.linear
    sigma = torch.linalg.matrix_norm(linear.weight.detach(), ord=2)
    assert sigma.item() == pytest.approx(1.0, rel=0.05)


def test_unknown_kind_and_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown generator kind 'vae'"):
        build_generator("vae", {})
    with pytest.raises(ValueError, match=r"unknown arguments \['depth'\]"):
        build_generator("mlp", {"depth": 3})


def test_generator_file_round_trip(tmp_path: Path) -> None:
    config = DCGANGeneratorConfig(16, 1, 16, width=8, num_classes=10)
    g = build_generator("dcgan", config_to_dict(config))
    g.eval()
    path = tmp_path / "generator.pt"
    torch.save(
        {
            "format": GENERATOR_FORMAT,
            "format_version": GENERATOR_FORMAT_VERSION,
            "kind": "dcgan",
            "config": config_to_dict(config),
            "state_dict": g.state_dict(),
            "data": {"name": "digits"},
        },
        path,
    )
    loaded, meta = load_generator(path)
    assert not loaded.training and meta["data"] == {"name": "digits"} and "state_dict" not in meta
    z, y = torch.randn(3, 16), torch.tensor([1, 2, 3])
    assert torch.equal(loaded(z, y), g(z, y))

    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a generator file"):
        load_generator(tmp_path / "other.pt")
