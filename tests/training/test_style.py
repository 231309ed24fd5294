"""The style-based generator: its two noise sources, truncation, style mixing, the running mean of
w, the discriminator's minibatch statistics, and training it end to end (every artifact, resume,
its own folder recipe)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.training.test_train import run_cli, train_records, write_class_folder
from training.config import ConfigError, load_config
from training.ema import EMA
from training.models import load_generator
from training.models.style import (
    StyleDiscriminator,
    StyleDiscriminatorConfig,
    StyleGenerator,
    StyleGeneratorConfig,
)
from training.style_mixing import mixing_grid
from training.train import train

SMALL = StyleGeneratorConfig(
    latent_dim=8, w_dim=16, mapping_layers=2, resolution=16, channel_base=128, channel_max=16, num_classes=3
)
# A style run small enough for the suite: digits at 16x16, a few steps, every style feature on.
DIGITS = [
    "data=digits",
    "model=style",
    "conditional=true",
    "resolution=16",
    "latent_dim=8",
    "w_dim=16",
    "mapping_layers=2",
    "g_width=4",
    "d_width=4",
    "channel_max=16",
    "batch_size=16",
    "r1_gamma=0.1",
    "r1_every=4",
    "style_mixing=0.9",
    "ema_rampup=0.05",
    "log_every=5",
    "sample_every=10",
    "eval_every=0",
    "checkpoint_every=10",
    "classifier_epochs=1",
]


def small_generator(seed: int = 0, **changes: object) -> StyleGenerator:
    torch.manual_seed(seed)
    config = StyleGeneratorConfig(**{**SMALL.__dict__, **changes})
    G = StyleGenerator(config).eval()
    with torch.no_grad():  # noise strengths start at 0: make the noise matter
        for layer in G.synthesis.convs:
            layer.noise_strength.normal_(0, 0.5)  # type: ignore[union-attr, operator]
        G.w_avg.normal_(0, 1)
    return G


def test_layers_noise_inputs_and_style_groups() -> None:
    for resolution, num_ws, groups in (
        (32, 8, {"coarse": (0, 4), "middle": (4, 6), "fine": (6, 8)}),
        (64, 10, {"coarse": (0, 4), "middle": (4, 8), "fine": (8, 10)}),
    ):
        G = small_generator(resolution=resolution)
        assert G.num_ws == num_ws and G.style_groups() == groups
        sides = [4, 8, 8, 16, 16, 32, 32, 64, 64][: num_ws - 1]
        assert G.noise_shapes == [(1, r, r) for r in sides]
        image = G(torch.randn(3, 8), torch.tensor([0, 1, 2]))
        assert image.shape == (3, 1, resolution, resolution)


def test_the_two_noise_sources_are_separate() -> None:
    G = small_generator()
    z, labels = torch.randn(2, 8), torch.tensor([0, 1])
    noise = G.random_noise(2, torch.Generator().manual_seed(1))
    other = G.random_noise(2, torch.Generator().manual_seed(2))
    with torch.no_grad():
        same = G(z, labels, noise=noise)
        assert torch.equal(same, G(z, labels, noise=noise))  # deterministic given both sources
        renoised = G(z, labels, noise=other)
        restyled = G(torch.randn(2, 8), labels, noise=noise)
    # each source changes the image on its own (how much, on a trained model: tests/service)
    assert not torch.equal(same, renoised) and not torch.equal(same, restyled)
    with torch.no_grad():
        for layer in G.synthesis.convs:
            layer.noise_strength.zero_()  # type: ignore[union-attr, operator]
        assert torch.equal(G(z, labels, noise=noise), G(z, labels, noise=other))


def test_truncation_pulls_toward_the_label_mean() -> None:
    G = small_generator()
    labels = torch.tensor([0, 1, 2, 0])
    w = G.mapping(torch.randn(4, 8), labels)
    assert torch.equal(G.truncate(w, labels, 1.0), w)
    assert torch.allclose(G.truncate(w, labels, 0.0), G.w_avg[labels])
    half = G.truncate(w, labels, 0.5)
    assert torch.allclose(half, (w + G.w_avg[labels]) / 2, atol=1e-6)
    noise = [torch.zeros(4, *s) for s in G.noise_shapes]
    with torch.no_grad():  # psi 0: one image per label whatever the latent
        images = G(torch.randn(4, 8), labels, psi=0.0, noise=noise)
    assert torch.allclose(images[0], images[3], atol=1e-6) and not torch.allclose(images[0], images[1])


def test_style_mixing_switches_w_at_the_cutoff() -> None:
    G = small_generator()
    z, z2, labels = torch.randn(2, 8), torch.randn(2, 8), torch.tensor([1, 2])
    noise = G.random_noise(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        mixed = G(z, labels, noise=noise, mix_z=z2, mix_cutoff=3)
        w, w2 = G.mapping(z, labels), G.mapping(z2, labels)
        ws = torch.cat([w[:, None].repeat(1, 3, 1), w2[:, None].repeat(1, G.num_ws - 3, 1)], dim=1)
        assert torch.allclose(mixed, G.synthesis(ws, noise), atol=1e-6)


def test_w_avg_is_tracked_per_class_while_training_only() -> None:
    G = small_generator()
    G.w_avg.zero_()
    labels = torch.tensor([0, 0, 2])
    z = torch.randn(3, 8)
    G.eval()
    G(z, labels)
    assert not G.w_avg.any()
    G.train()
    G(z, labels)
    w = G.mapping(z, labels).detach()
    beta = G.config.w_avg_beta
    assert torch.allclose(G.w_avg[0], (1 - beta) * w[:2].mean(0), atol=1e-6)
    assert not G.w_avg[1].any()  # class 1 was not in the batch
    assert torch.allclose(G.w_avg[2], (1 - beta) * w[2], atol=1e-6)


def test_minibatch_stddev_keeps_real_and_fake_groups_apart() -> None:
    torch.manual_seed(0)
    D = StyleDiscriminator(
        StyleDiscriminatorConfig(resolution=16, channel_base=64, num_classes=3, mbstd_group=4)
    )
    real, labels = torch.randn(8, 1, 16, 16), torch.randint(0, 3, (16,))
    with torch.no_grad():
        a = D(torch.cat([real, torch.randn(8, 1, 16, 16)]), labels)
        b = D(torch.cat([real, torch.randn(8, 1, 16, 16)]), labels)
    assert torch.equal(a[:8], b[:8]) and not torch.equal(a[8:], b[8:])


def test_ema_ramp_up() -> None:
    ema = EMA(torch.nn.Linear(2, 2), decay=0.999, rampup=0.05)
    # the half-life is 5 % of the steps so far, until it reaches 0.999's (693 steps)
    assert ema.decay_at(99) == pytest.approx(0.5 ** (1 / 5))
    assert ema.decay_at(999) == pytest.approx(0.5 ** (1 / 50))
    assert ema.decay_at(100_000) == pytest.approx(0.999)
    assert EMA(torch.nn.Linear(2, 2), decay=0.999).decay_at(5) == 0.999


def test_style_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="mbstd_group: batch_size 30 is not a multiple of 4"):
        load_config(None, [*DIGITS, "batch_size=30"])
    with pytest.raises(ConfigError, match="mapping_lr_mul"):
        load_config(None, [*DIGITS, "mapping_lr_mul=0"])
    with pytest.raises(ConfigError, match="style_mixing"):
        load_config(None, [*DIGITS, "style_mixing=1.5"])
    with pytest.raises(ConfigError, match="r1_every"):
        load_config(None, [*DIGITS, "r1_every=0"])
    with pytest.raises(ConfigError, match="style needs a power of two"):
        load_config(None, [*DIGITS, "resolution=24"])


def test_digits_style_recipe_dry_run_writes_the_mixing_grid(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_cli("--config", "configs/digits_style.toml", "--dry-run", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert {"fd", "accuracy", "recall"} <= set(json.loads(result.stdout))
    samples = out / "samples"
    assert {"latest.png", "mixing_latest.png", "mixing_00000003.png"} <= {p.name for p in samples.iterdir()}
    with Image.open(samples / "mixing_latest.png") as grid:
        # 3 blocks (coarse, middle, fine) of 5 rows (header + 4 row sources) x 6 columns of 32 px
        # cells with 2 px gutters
        assert grid.size == (6 * 34 + 2, 15 * 34 + 2)
    records = train_records(out)
    assert all("r1" in r for r in records[:1])  # lazy R1 logged on the steps it ran
    G, meta = load_generator(out / "generator.pt")
    assert meta["kind"] == "style" and isinstance(G, StyleGenerator) and G.num_ws == 8
    assert G.w_avg.shape == (10, 128) and G.w_avg.abs().sum() > 0  # tracked, then saved
    again = run_cli("eval", str(out))  # gan-train eval rebuilds the style G from the run
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["accuracy"] == json.loads(result.stdout)["accuracy"]


def test_mixing_grid_layout() -> None:
    G = small_generator()
    cells, rows = mixing_grid(G, [1, 2], [3, 4, 5])
    assert rows == 9 and cells.shape == (9 * 4, 1, 16, 16)
    # block 0 (coarse): corner blank, then the column sources; row 1 starts with row source 1
    assert torch.equal(cells[0], torch.ones_like(cells[0]))
    block = cells.reshape(3, 3, 4, 1, 16, 16)
    assert torch.equal(block[0, 0, 1:], block[1, 0, 1:]) and torch.equal(block[0, 1:, 0], block[2, 1:, 0])


def test_resume_equals_an_uninterrupted_style_run(tmp_path: Path) -> None:
    cfg = load_config(None, [*DIGITS, "steps=20"])
    train(cfg, tmp_path / "whole")
    parts = tmp_path / "parts"
    shutil.copytree(tmp_path / "whole", parts)
    for name in ("generator.pt", "eval.json", "checkpoints/step_00000020.pt"):
        (parts / name).unlink()
    train(cfg, parts, resume=True)
    assert train_records(tmp_path / "whole") == train_records(parts)
    a = torch.load(tmp_path / "whole" / "checkpoints" / "step_00000020.pt", weights_only=False)
    b = torch.load(parts / "checkpoints" / "step_00000020.pt", weights_only=False)
    for key in ("generator", "discriminator", "generator_ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name}"


def test_folder_style_recipe_trains_at_64_pixels(tmp_path: Path) -> None:
    images = write_class_folder(tmp_path / "images", 66)
    out = tmp_path / "run"
    result = run_cli(
        "--config",
        "configs/folder_style.toml",
        "--set",
        f"data=folder:{images}",
        "--dry-run",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    G, meta = load_generator(out / "generator.pt")
    assert meta["kind"] == "style" and meta["data"]["class_names"] == ["blue", "red"]
    assert G(torch.randn(2, G.config.latent_dim), torch.tensor([0, 1])).shape == (2, 3, 64, 64)
    assert (out / "samples" / "mixing_latest.png").is_file()
