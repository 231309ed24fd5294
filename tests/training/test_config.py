"""Config files and overrides: every mistake is rejected with a message that names the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import LOSS_DEFAULTS, ConfigError, TrainConfig, dump_toml, load_config, parse_override
from training.sr.config import SRConfig, load_any_config

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_loads(path: Path) -> None:
    cfg = load_any_config(path)
    if isinstance(cfg, SRConfig):
        assert cfg.data.startswith("sr_")
    else:
        resolved = cfg.resolved()
        assert resolved.g_lr is not None and resolved.d_steps is not None


def test_shipped_configs_exist() -> None:
    names = {p.stem for p in CONFIGS}
    assert {"ring8", "grid25", "digits_cdcgan", "sr_x2", "sr_x4", "srgan_x4"} <= names


def test_a_gan_only_command_rejects_an_sr_recipe() -> None:
    with pytest.raises(ConfigError, match="sr_skimage and sr_folder:PATH are for super-resolution"):
        load_config(None, ["data=sr_skimage"])


def test_overrides_are_typed_toml_literals(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('data = "ring8"\nsteps = 10\n')
    cfg = load_config(path, ["steps=25", "spectral_norm=true", "g_lr=1e-3", "loss=hinge", "name=my run"])
    assert (cfg.steps, cfg.spectral_norm, cfg.g_lr, cfg.loss, cfg.name) == (25, True, 1e-3, "hinge", "my run")
    assert parse_override("data=folder:/x/y") == ("data", "folder:/x/y")
    assert parse_override("instance_noise = 0.1") == ("instance_noise", 0.1)


def test_integers_are_accepted_where_floats_are_expected() -> None:
    cfg = load_config(None, ["instance_noise=1"])
    assert isinstance(cfg.instance_noise, float)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("stepz=10", r"unknown config key 'stepz' \(did you mean 'steps'\?\)"),
        ("loss=lsgan", r"loss: 'lsgan' is not one of minimax, nonsaturating, wgan, wgan-gp, hinge"),
        ("steps=0", "steps: must be > 0"),
        ("accuracy_draws=0", "accuracy_draws: must be > 0"),
        ("steps=ten", "steps: expected an integer, got 'ten'"),
        ("steps=1.5", "steps: expected an integer"),
        ("spectral_norm=1", "spectral_norm: expected true/false"),
        ("batch_size=true", "batch_size: expected an integer, got a boolean"),
        ("g_lr=2", r"g_lr: learning rate must be in \(0, 1\)"),
        ("ema_decay=1.0", r"ema_decay: must be in \[0, 1\)"),
        ("data=mnist", "data: 'mnist' is not one of ring8, grid25, digits, folder:PATH"),
        ("data=folder:", "data: folder: needs a path"),
        ("channels=2", "channels: must be 1"),
        ("instance_noise=-0.1", "instance_noise: must be >= 0"),
        ("label_smoothing=0.7", "label_smoothing"),
        ("lr_schedule=cosine", "lr_schedule: 'cosine' is not one of constant, linear"),
        ("steps", "expected key=value"),
        ("conditional=true", "conditional: ring8 has no class labels"),
        ("model=dcgan", "model: dcgan generates images; use mlp for ring8"),
    ],
)
def test_bad_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


@pytest.mark.parametrize("loss", ["hinge", "wgan", "wgan-gp"])
def test_label_smoothing_is_refused_where_the_loss_would_ignore_it(loss: str) -> None:
    with pytest.raises(ConfigError, match=f"only the minimax and nonsaturating.*loss {loss} would ignore it"):
        load_config(None, [f"loss={loss}", "label_smoothing=0.1"])
    for kept in ("minimax", "nonsaturating"):
        assert load_config(None, [f"loss={kept}", "label_smoothing=0.1"]).label_smoothing == 0.1


def test_dcgan_resolution_must_be_a_power_of_two() -> None:
    with pytest.raises(ConfigError, match="resolution: dcgan needs a power of two, got 24"):
        load_config(None, ["data=digits", "model=dcgan", "resolution=24"])


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("steps = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)
    nested = tmp_path / "nested.toml"
    nested.write_text("[optim]\ng_lr = 0.1\n")
    with pytest.raises(ConfigError, match=r"\[optim\] tables are not used"):
        load_config(nested)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("learning_rate = 0.1\n")
    with pytest.raises(ConfigError, match="unknown config key 'learning_rate'"):
        load_config(unknown)


def test_loss_defaults_fill_unset_optimiser_keys_only() -> None:
    cfg = load_config(None, ["loss=wgan-gp"]).resolved()
    assert (cfg.optimizer, cfg.g_lr, cfg.beta1, cfg.beta2, cfg.d_steps) == ("adam", 1e-4, 0.0, 0.9, 5)
    cfg = load_config(None, ["loss=wgan-gp", "d_steps=2"]).resolved()
    assert cfg.d_steps == 2
    for loss, defaults in LOSS_DEFAULTS.items():
        resolved = load_config(None, [f"loss={loss}"]).resolved()
        assert all(getattr(resolved, k) == v for k, v in defaults.items())


def test_dumped_config_reads_back_identically(tmp_path: Path) -> None:
    cfg = load_config(None, ['name=a "quoted" \\ name', "data=folder:/tmp/x", "g_lr=3e-4"]).resolved()
    path = tmp_path / "dump.toml"
    path.write_text(dump_toml(cfg.to_dict()))
    assert load_config(path) == cfg
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
