"""The GAN training loop: D and G in a min-max game, read top to bottom.

One "step" is one generator update, preceded by `d_steps` discriminator updates
(training/gan_step.py). All randomness after model initialisation comes from two explicit
generators (data, noise) whose states are checkpointed with the models (training/gan_state.py),
so `--resume` reproduces an uninterrupted run exactly. training/loop.py holds the skeleton this
loop shares with the super-resolution one: the run directory, progress, periodic saves, Ctrl-C.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training import regularizers as reg
from training.artifacts import save_image_grid, save_scatter, save_training_plot
from training.config import ConfigError, TrainConfig
from training.data import LoadedData, load_data
from training.data.base import DataInfo
from training.distributed import DistInfo, init_distributed, shutdown
from training.ema import EMA, standing_statistics
from training.evaluation import balanced_labels, evaluate, generate
from training.gan_state import GAN, RandomStreams, build_gan, checkpoint_state, resume_gan
from training.gan_step import GANStep
from training.health import HealthMonitor, class_diversity, diversity, worst_class_ratio
from training.loop import RunDir, TrainingLoop
from training.models import config_to_dict, save_generator_file
from training.models.style import StyleGenerator
from training.runtime import (
    BOOKKEEPING_KEYS,
    RunningMeans,
    format_metrics,
    lr_scale,
    pick_device,
    set_learning_rates,
)
from training.style_mixing import mixing_grid

log = logging.getLogger("training")

RESUMABLE_CHANGES = BOOKKEEPING_KEYS | {"cache_dir", "accuracy_draws"}  # neither touches training
DIVERSITY_SAMPLES = 256
# the style-mixing figure's sources: 4 row seeds and 5 column seeds (labels: seed mod classes)
MIXING_ROWS, MIXING_COLUMNS = [11, 12, 13, 14], [21, 22, 23, 24, 25]


def dry_run_config(cfg: TrainConfig) -> TrainConfig:
    """The same code paths in seconds: a few steps, every artifact written, tiny evaluation."""
    return dataclasses.replace(
        cfg,
        steps=min(cfg.steps, 3),
        log_every=1,
        sample_every=1,
        eval_every=0,
        checkpoint_every=2,
        eval_samples=min(cfg.eval_samples, 200),
        classifier_epochs=1,
        accuracy_draws=1,
        health_window=2,
    )


def train(cfg: TrainConfig, out_dir: Path, resume: bool = False, dry_run: bool = False) -> dict[str, Any]:
    """Run (or resume) training; returns the final evaluation. Rank 0 writes everything."""
    cfg = cfg.resolved()
    if dry_run:
        cfg = dry_run_config(cfg)
    dist_info = init_distributed("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
    try:
        with contextlib.ExitStack() as cleanup:
            return _train(cfg, Path(out_dir), resume, dist_info, cleanup)
    finally:
        shutdown(dist_info)


def _train(
    cfg: TrainConfig, out_dir: Path, resume: bool, dist_info: DistInfo, cleanup: contextlib.ExitStack
) -> dict[str, Any]:
    device = pick_device(cfg.device, dist_info.local_rank)
    batch = process_batch(cfg, dist_info)

    # --- run directory: config, log file, metrics (rank 0 writes) ---
    run = RunDir.prepare(out_dir, cfg, resume, RESUMABLE_CHANGES, dist_info)
    run.write_config(cleanup)

    # --- data: a sampler for training; fixed splits for evaluation ---
    data = load_data(cfg)
    if run.main and data.info.skipped_files:
        log.warning("%d unreadable file(s) skipped (listed above)", len(data.info.skipped_files))

    # --- models, EMA of G, optimisers; the random streams and the health monitor ---
    gan = build_gan(cfg, data.info, device)
    streams = RandomStreams.seeded(cfg.seed, dist_info.rank)
    monitor = HealthMonitor(window=cfg.health_window, saturating=cfg.loss == "minimax")

    # --- resume: all of the above from the newest checkpoint; then DDP under torchrun ---
    start_step = 0
    if run.resume_from is not None:
        start_step, monitor = resume_gan(run.resume_from, gan, streams, cfg.seed, dist_info.rank)
        run.resumed_at(start_step)
    gan.distribute(device, dist_info)

    # --- fixed inputs for sample grids and the diversity check ---
    reference = Reference.of(data, gan.num_classes)
    if run.main:
        log_start(cfg, gan, data.info, start_step, batch, dist_info, device)

    # --- what the loop saves: checkpoints; samples and evaluations of the served G ---
    def save_state(step: int, all_ranks: bool) -> dict[str, Any]:
        return checkpoint_state(gan, streams, monitor, data.info, dist_info, step, all_ranks)

    served = Served(gan.served, gan.ema, cfg, data, reference.labels, run)

    # --- the loop: progress bar, periodic samples / eval / checkpoint, Ctrl-C (training/loop.py) ---
    train_step = GANStep(cfg, gan, data.sampler, streams, batch, device, start_step)
    running = RunningMeans(samples_per_step=train_step.d_steps * cfg.batch_size)
    assert cfg.g_lr is not None and cfg.d_lr is not None  # cfg.resolved() sets both
    base_rates = [(gan.opt_g, cfg.g_lr), (gan.opt_d, cfg.d_lr)]
    with TrainingLoop(
        run,
        start_step,
        generator_kind=cfg.model,
        generator_config=config_to_dict(gan.g_config),
        checkpoint_state=save_state,
        write_samples=served.write_samples,
        evaluate=served.evaluate,
        plot=save_training_plot,
    ) as loop:
        for step in loop.steps():
            sigma = reg.instance_noise_std(cfg.instance_noise, cfg.instance_noise_anneal_steps, step)
            scale = lr_scale(cfg, step)
            set_learning_rates(base_rates, scale)
            # (1) D's updates and (2) G's (training/gan_step.py), then (3) bookkeeping: running
            # means, then log (with the health checks), then samples / eval / checkpoint when due
            running.add(train_step(step, sigma))
            done = step + 1
            if loop.due(done, cfg.log_every):
                record: dict[str, Any] = {"step": done, "event": "train", **running.flush()}
                record["instance_noise"] = sigma
                record["lr_scale"] = scale
                reference.measure(record, gan.G_plain, cfg.seed)
                for warning in monitor.update(record):
                    if run.main:
                        log.warning("step %d: %s", done, warning.message)
                        run.metrics.write(warning.record(done))
                loop.log(record, d=f"{record['d_loss']:.3f}", g=f"{record['g_loss']:.3f}")
            loop.periodic(done)

    # --- the end (rank 0): generator.pt with the served weights, final evaluation, eval.json, plot ---
    return loop.finish(served.save, final_eval=lambda: served.evaluate(cfg.steps, final=True))


def process_batch(cfg: TrainConfig, dist_info: DistInfo) -> int:
    """Each process's share of the batch, checked to split evenly."""
    if cfg.batch_size % dist_info.world_size:
        raise ConfigError(
            f"batch_size: {cfg.batch_size} does not split over {dist_info.world_size} processes"
        )
    batch = cfg.batch_size // dist_info.world_size  # per process
    if cfg.model == "style" and cfg.mbstd_group and batch % cfg.mbstd_group:
        raise ConfigError(
            f"mbstd_group: the per-process batch {batch} is not a multiple of {cfg.mbstd_group}"
        )
    return batch


def log_start(
    cfg: TrainConfig,
    gan: GAN,
    info: DataInfo,
    start_step: int,
    batch: int,
    dist_info: DistInfo,
    device: torch.device,
) -> None:
    log.info(
        "training %s G (%d params) / D (%d params) on %s with %s loss, %d step(s) from %d, "
        "batch %d x %d process(es), device %s",
        cfg.model,
        sum(p.numel() for p in gan.G_plain.parameters()),
        sum(p.numel() for p in gan.D_plain.parameters()),
        info.name,
        cfg.loss,
        cfg.steps,
        start_step,
        batch,
        dist_info.world_size,
        device,
    )


@dataclass
class Reference:
    """Fixed inputs for sample grids, and the real data's spread the diversity check compares G's
    samples with."""

    labels: torch.Tensor | None  # (100,) balanced class labels; None: unconditional
    spread: float
    class_spread: dict[int, float]  # per class; empty when unconditional

    @classmethod
    def of(cls, data: LoadedData, num_classes: int) -> Reference:
        conditional = num_classes > 0
        labels = balanced_labels(100, num_classes) if conditional else None
        real_x, real_y = data.sampler.sample(DIVERSITY_SAMPLES, torch.Generator().manual_seed(0))
        spread = diversity(real_x)
        # per class too: a conditional G can collapse inside each class and keep the pooled spread
        class_spread = class_diversity(real_x, real_y) if conditional and real_y is not None else {}
        return cls(labels, spread, class_spread)

    def measure(self, record: dict[str, Any], generator: nn.Module, seed: int) -> None:
        """G's diversity relative to the real data's, into a train record."""
        spread_labels = _cycle(self.labels, DIVERSITY_SAMPLES)
        samples = generate(generator, DIVERSITY_SAMPLES, seed=seed + 1, labels=spread_labels)
        record["diversity_ratio"] = diversity(samples) / max(self.spread, 1e-12)
        if self.class_spread and spread_labels is not None:
            worst = worst_class_ratio(class_diversity(samples, spread_labels), self.class_spread)
            if worst is not None:
                record["class_diversity_worst"], record["class_diversity_ratio"] = worst


@dataclass
class Served:
    """The weights users will get (the EMA G, else G): its samples, evaluations and generator.pt."""

    generator: nn.Module
    ema: EMA | None
    cfg: TrainConfig
    data: LoadedData
    fixed_labels: torch.Tensor | None
    run: RunDir

    def ready(self) -> None:
        """The EMA G's BatchNorm statistics for its own weights, before it is sampled, evaluated
        or saved (each EMA update copies the raw G's again, so training is unaffected)."""
        if self.ema is not None:
            standing_statistics(self.ema.model, self.cfg.standing_batches)

    def write_samples(self, step: int, path: Path) -> None:
        self.ready()
        cfg, served, fixed_labels = self.cfg, self.generator, self.fixed_labels
        if self.data.info.kind == "toy":
            real = self.data.sampler.sample(1000, torch.Generator().manual_seed(0))[0]
            fake = generate(served, 1000, seed=cfg.seed)
            save_scatter(fake, real, path, f"step {step}")
            return
        conditional = fixed_labels is not None
        images = generate(served, 100 if conditional else 64, seed=cfg.seed, labels=fixed_labels)
        rows = min(self.data.info.num_classes, 10) if conditional else 8
        if fixed_labels is not None:
            # one row per class: (100,) labels cycle 0..C-1, so reorder by label
            order = torch.argsort(fixed_labels[: images.shape[0]], stable=True)
            images = images[order][: rows * 10]
        save_image_grid(images, rows, path)
        if isinstance(served, StyleGenerator):  # the style-mixing figure beside the samples
            cells, grid_rows = mixing_grid(served, MIXING_ROWS, MIXING_COLUMNS)
            save_image_grid(cells, grid_rows, path.with_name(path.name.replace("step_", "mixing_")))
            save_image_grid(cells, grid_rows, path.with_name("mixing_latest.png"))

    def evaluate(self, step: int, final: bool = False) -> dict[str, Any]:
        self.ready()
        cfg = self.cfg
        t0 = time.perf_counter()
        result = evaluate(
            self.generator,
            self.data,
            cfg.eval_samples,
            cfg.classifier_epochs,
            cfg.cache_dir,
            cas=final,
            accuracy_draws=cfg.accuracy_draws,
        )
        record = {"step": step, "event": "eval", **result, "eval_seconds": time.perf_counter() - t0}
        self.run.metrics.write(record)
        log.info("eval @ %d: %s", step, format_metrics(result))
        return record

    def save(self, path: Path, quality: dict[str, Any]) -> None:
        self.ready()
        save_generator(path, self.generator, self.cfg, self.data.info, quality)


def save_generator(
    path: Path, generator: nn.Module, cfg: TrainConfig, info: DataInfo, quality: dict[str, Any]
) -> None:
    training = {
        "task": "generate",
        "loss": cfg.loss,
        "steps": cfg.steps,
        "model": cfg.model,
        "data": cfg.data,
        "seed": cfg.seed,
        "conditional": cfg.conditional,
        "batch_size": cfg.batch_size,
    }
    save_generator_file(path, generator, cfg.model, cfg.ema_decay > 0, info.summary(), training, quality)


def _cycle(labels: torch.Tensor | None, n: int) -> torch.Tensor | None:
    return None if labels is None else labels.repeat(math.ceil(n / labels.shape[0]))[:n]
