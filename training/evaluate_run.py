"""`gan-train eval RUN_DIR`: evaluate a finished (or interrupted) run's generator again (GAN or SR)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from training.checkpoint import latest_checkpoint, load_checkpoint
from training.config import ConfigError, TrainConfig, is_super_resolution
from training.data import load_data
from training.evaluation import evaluate
from training.gan_state import network_configs
from training.models import build_generator, config_to_dict, load_generator, record_metrics
from training.sr.config import SRConfig


def evaluate_run(
    run_dir: Path, samples: int | None = None, write: bool = True, record: bool = False
) -> dict[str, Any]:
    """Evaluate `generator.pt`, or the newest checkpoint's (EMA) G when training did not finish.
    record: also store the figures as generator.pt's metrics (what gan-export puts in the
    manifest), so a model re-measured with a newer evaluation is exported with its new numbers."""
    if record and not (run_dir / "generator.pt").is_file():
        raise FileNotFoundError(f"{run_dir}: --record needs the finished run's generator.pt")
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a run directory (no config.json)")
    values = json.loads(config_path.read_text())
    scored: dict[str, Any] | None = None  # a GAN's held-out split is fixed; an upscaler's sets can grow
    if is_super_resolution(values):
        if samples is not None:
            raise ConfigError("--samples: a super-resolution run is evaluated on its held-out images")
        result, scored = _evaluate_sr_run(run_dir, SRConfig.from_dict(values))
    else:
        result = _evaluate_gan_run(run_dir, TrainConfig.from_dict(values), samples)
    if write:
        (run_dir / "eval.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    if record:
        record_metrics(run_dir / "generator.pt", {k: v for k, v in result.items() if k != "source"}, scored)
    return result


def _run_generator(run_dir: Path, kind: str, config: dict[str, Any]) -> tuple[nn.Module, str]:
    """The run's `generator.pt`, or else G (`kind`, `config`) with the newest checkpoint's (EMA)
    weights, for a run that did not finish; and which of the two it is."""
    if (run_dir / "generator.pt").is_file():
        generator, _ = load_generator(run_dir / "generator.pt")
        return generator, "generator.pt"
    ckpt = latest_checkpoint(run_dir / "checkpoints")
    if ckpt is None:
        raise FileNotFoundError(f"{run_dir}: no generator.pt and no checkpoint to evaluate")
    state = load_checkpoint(ckpt)
    generator = build_generator(kind, config)
    generator.load_state_dict(state["generator_ema"] or state["generator"])
    return generator.eval(), ckpt.name


def _evaluate_gan_run(run_dir: Path, cfg: TrainConfig, samples: int | None) -> dict[str, Any]:
    data = load_data(cfg)
    g_config, _ = network_configs(cfg, data.info)
    generator, source = _run_generator(run_dir, cfg.model, config_to_dict(g_config))
    return {
        "source": source,
        **evaluate(
            generator,
            data,
            samples or cfg.eval_samples,
            cfg.classifier_epochs,
            cfg.cache_dir,
            cas=True,
            accuracy_draws=cfg.accuracy_draws,
        ),
    }


def _evaluate_sr_run(run_dir: Path, cfg: SRConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """PSNR/SSIM/NIQE on the validation and test images beside bicubic, and the names of the
    images scored; comparison PNGs under RUN_DIR/eval/validation/ and RUN_DIR/eval/test/."""
    from training.sr.data import load_hr_images
    from training.sr.evaluation import evaluate_sets
    from training.sr.train import generator_config

    generator, source = _run_generator(run_dir, "srresnet", config_to_dict(generator_config(cfg)))
    images = load_hr_images(cfg.data, cfg.patch_size, cfg.bad_files, cfg.heldout_fraction, cfg.max_memory_mb)
    result = evaluate_sets(
        generator,
        images,
        ("validation", "test"),
        cfg.scale,
        cfg.eval_tile,
        cfg.eval_overlap,
        cfg.eval_batch,
        cfg.eval_max_images,
        run_dir / "eval",
    )
    summary = images.summary()
    return {"source": source, **result}, {k: summary[k] for k in ("validation_images", "test_images")}
