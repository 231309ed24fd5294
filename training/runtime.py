"""What every training loop (GAN and super-resolution) shares: the run directory, the device,
the learning-rate schedule, seeded random streams, the log file and the progress bar."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from training.checkpoint import latest_checkpoint
from training.config import ConfigError, dump_toml

log = logging.getLogger("training")

DATA_STREAM, NOISE_STREAM = 1, 2
# Keys that may change on --resume in every recipe: they steer bookkeeping, not the optimisation.
BOOKKEEPING_KEYS = frozenset(
    {"steps", "log_every", "sample_every", "eval_every", "checkpoint_every", "keep_checkpoints", "device"}
)


class RunError(RuntimeError):
    """The run directory or the request cannot be honoured; nothing was changed."""


class RunConfig(Protocol):
    """The keys the shared helpers read; TrainConfig and SRConfig both have them."""

    steps: int
    lr_schedule: str
    lr_decay_start: float

    def to_dict(self) -> dict[str, Any]: ...


def stream_seed(seed: int, rank: int, stream: int, step: int = 0) -> int:
    """Seed of one random stream (data or noise) of one process: distinct per rank and stream."""
    return seed * 7919 + step * 31 + 2 * rank + stream


def lr_scale(cfg: RunConfig, step: int) -> float:
    """Multiplier of the base learning rates at `step` (0-based): 1, or a linear decay that
    starts after `lr_decay_start` of the run and reaches 0 after the last step."""
    if cfg.lr_schedule == "constant":
        return 1.0
    start = cfg.lr_decay_start * cfg.steps
    if step < start:
        return 1.0
    return max(0.0, 1.0 - (step - start) / max(cfg.steps - start, 1.0))


def set_learning_rates(optimizers: Sequence[tuple[torch.optim.Optimizer, float]], scale: float) -> None:
    """The rate is a function of the step alone, so a resumed run follows the same schedule."""
    for opt, base_lr in optimizers:
        for group in opt.param_groups:
            group["lr"] = base_lr * scale


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RunError("device = cuda, but no CUDA device is available (use auto or cpu)")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def prepare_run_dir(out_dir: Path, cfg: RunConfig, resume: bool, resumable: Collection[str]) -> Path | None:
    """Returns the checkpoint to resume from. Refuses to mix a new run into an existing one."""
    ckpt = latest_checkpoint(out_dir / "checkpoints")
    if resume:
        if ckpt is None:
            raise RunError(f"--resume: no checkpoint under {out_dir / 'checkpoints'}")
        saved = json.loads((out_dir / "config.json").read_text())
        # A key newer than the saved run was, in effect, at its default there.
        defaults = type(cfg)().to_dict()
        changed = sorted(k for k, v in cfg.to_dict().items() if saved.get(k, defaults[k]) != v)
        fixed = [k for k in changed if k not in resumable]
        if fixed:
            raise ConfigError(
                f"--resume: {', '.join(fixed)} differ from the saved run; only "
                f"{', '.join(sorted(resumable))} may change when resuming"
            )
        if "steps" in changed and cfg.lr_schedule != "constant":
            log.warning("--resume: steps changed, so the linear learning-rate decay is stretched to match")
        return ckpt
    if (out_dir / "metrics.jsonl").exists() or ckpt is not None:
        raise RunError(f"{out_dir} already holds a run: pass --resume to continue it, or another --out")
    return None


def write_run_config(out_dir: Path, cfg: RunConfig, cleanup: contextlib.ExitStack) -> None:
    """config.toml (re-runnable), config.json (read back on resume and eval), and train.log, which
    receives every log record until `cleanup` closes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.toml").write_text(dump_toml(cfg.to_dict()))
    (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    handler = logging.FileHandler(out_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    cleanup.callback(handler.close)
    cleanup.callback(logging.getLogger().removeHandler, handler)


class RunningMeans:
    """Per-step statistics averaged over one logging interval, with the interval's throughput."""

    def __init__(self, samples_per_step: int) -> None:
        self.samples_per_step = samples_per_step
        self.totals: dict[str, float] = {}
        self.counts: dict[str, int] = {}  # a statistic may be measured on some steps only (lazy R1)
        self.count = 0
        self.since = time.perf_counter()

    def add(self, stats: dict[str, float]) -> None:
        for key, value in stats.items():
            self.totals[key] = self.totals.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1
        self.count += 1

    def flush(self) -> dict[str, float]:
        """The means since the last flush, plus `samples_per_s`; starts a new interval."""
        now = time.perf_counter()
        means = {k: v / self.counts[k] for k, v in self.totals.items()}
        means["samples_per_s"] = self.count * self.samples_per_step / max(now - self.since, 1e-9)
        self.totals, self.counts, self.count, self.since = {}, {}, 0, now
        return means


def format_metrics(result: dict[str, Any]) -> str:
    """One log line of the scalar metrics (per-class tables stay in metrics.jsonl and eval.json)."""
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in result.items()
        if not isinstance(v, dict | list)
    )


def progress_bar(total: int, initial: int, enabled: bool) -> Any:
    from tqdm import tqdm

    # disable=None: shown on a terminal, silent in logs and CI.
    return tqdm(
        total=total,
        initial=initial,
        disable=None if enabled else True,
        unit="step",
        dynamic_ncols=True,
    )
