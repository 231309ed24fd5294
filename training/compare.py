"""`gan-train compare`: the same recipes under each loss, one table of the results.

Each loss gets its own optimiser defaults (LOSS_DEFAULTS): the recipe's optimiser keys are dropped
so that, e.g., wgan-gp runs with Adam(1e-4, betas 0/0.9) and 5 critic steps, as published.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from training.config import TrainConfig, load_config
from training.train import train

log = logging.getLogger("training")
DEFAULT_LOSSES = ("minimax", "nonsaturating", "wgan-gp", "hinge")
PER_LOSS_KEYS = ("optimizer", "g_lr", "d_lr", "beta1", "beta2", "d_steps")


def compare(
    configs: list[Path],
    losses: list[str],
    out_dir: Path,
    overrides: list[str],
    dry_run: bool = False,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for config_path in configs:
        base = load_config(config_path, overrides)
        for loss in losses:
            values = {k: v for k, v in base.to_dict().items() if k not in PER_LOSS_KEYS}
            values["loss"] = loss
            if loss not in ("minimax", "nonsaturating") and values.get("label_smoothing"):
                # only those two losses have a real target to smooth; the others refuse the key
                log.info("compare: %s has no label smoothing; it runs without", loss)
                values["label_smoothing"] = 0.0
            cfg = TrainConfig.from_dict(values)
            run_dir = out_dir / f"{config_path.stem}-{loss}"
            log.info("compare: %s with %s -> %s", config_path.name, loss, run_dir)
            t0 = time.perf_counter()
            result = train(cfg, run_dir, dry_run=dry_run)
            rows.append(
                {
                    "recipe": config_path.stem,
                    "data": cfg.data,
                    "loss": loss,
                    "seconds": time.perf_counter() - t0,
                    **result,
                }
            )
            (out_dir / "comparison.json").write_text(json.dumps(rows, indent=2, sort_keys=True) + "\n")
    (out_dir / "comparison.md").write_text(markdown_table(rows))
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| recipe | loss | modes | high-quality | accuracy | FD (real baseline) "
        "| precision / recall | time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        modes = f"{r['modes']}/{r['modes_total']}" if "modes" in r else "-"
        hq = f"{r['hq_fraction']:.1%}" if "hq_fraction" in r else "-"
        acc = f"{r['accuracy']:.1%}" if "accuracy" in r else "-"
        fd = f"{r['fd']:.2f} ({r['fd_real_baseline']:.2f})" if "fd" in r else "-"
        pr = f"{r['precision']:.2f} / {r['recall']:.2f}" if "precision" in r else "-"
        lines.append(
            f"| {r['recipe']} | {r['loss']} | {modes} | {hq} | {acc} | {fd} | {pr} | {r['seconds']:.0f} s |"
        )
    return "\n".join(lines) + "\n"
