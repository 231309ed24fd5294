"""`gan-train eval RUN_DIR`: evaluate a finished (or interrupted) run's generator again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from training.checkpoint import latest_checkpoint, load_checkpoint
from training.config import TrainConfig
from training.data import load_data
from training.evaluation import evaluate
from training.models import build_generator, config_to_dict, load_generator
from training.train import network_configs


def evaluate_run(run_dir: Path, samples: int | None = None, write: bool = True) -> dict[str, Any]:
    """Evaluate `generator.pt`, or the newest checkpoint's (EMA) G when training did not finish."""
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a run directory (no config.json)")
    cfg = TrainConfig.from_dict(json.loads(config_path.read_text()))
    data = load_data(cfg)
    generator: nn.Module
    if (run_dir / "generator.pt").is_file():
        generator, _ = load_generator(run_dir / "generator.pt")
        source = "generator.pt"
    else:
        ckpt = latest_checkpoint(run_dir / "checkpoints")
        if ckpt is None:
            raise FileNotFoundError(f"{run_dir}: no generator.pt and no checkpoint to evaluate")
        state = load_checkpoint(ckpt)
        g_config, _ = network_configs(cfg, data.info)
        generator = build_generator(cfg.model, config_to_dict(g_config))
        generator.load_state_dict(state["generator_ema"] or state["generator"])
        source = ckpt.name
    result = {
        "source": source,
        **evaluate(generator, data, samples or cfg.eval_samples, cfg.classifier_epochs, cfg.cache_dir),
    }
    if write:
        (run_dir / "eval.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result
