"""The super-resolution training loop, read top to bottom.

Stage 1 (`sr_pixel`): SRResNet learns to minimise a pixel loss against the HR crop (PSNR-oriented).
Stage 2 (`srgan`): starting from a stage-1 generator, G also plays the GAN game against a patch
discriminator and matches D's features on HR images: sharper textures at some cost in PSNR.

Same run layout as the GAN job: config.toml/json, train.log, metrics.jsonl, samples/, plots/,
checkpoints/ (resumable exactly), generator.pt (the EMA weights) and eval.json.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.checkpoint import load_checkpoint
from training.config import ConfigError
from training.ema import EMA
from training.loop import RunDir, TrainingLoop
from training.models import config_to_dict, load_generator, save_generator_file
from training.models.srresnet import (
    PatchDiscriminator,
    PatchDiscriminatorConfig,
    SRResNetConfig,
    SRResNetGenerator,
)
from training.runtime import (
    BOOKKEEPING_KEYS,
    DATA_STREAM,
    RunError,
    RunningMeans,
    format_metrics,
    lr_scale,
    pick_device,
    set_learning_rates,
    stream_seed,
)
from training.sr import losses
from training.sr.config import SRConfig
from training.sr.data import HRImages, SRPairSampler, load_hr_images
from training.sr.degradation import Degradation
from training.sr.evaluation import evaluate_sets, save_comparison, upscale_triplet
from training.sr.plots import save_sr_training_plot

log = logging.getLogger("training")

RESUMABLE_CHANGES = BOOKKEEPING_KEYS | {"eval_tile", "eval_overlap", "eval_batch", "eval_max_images"}


def dry_run_config(cfg: SRConfig) -> SRConfig:
    """Every code path in seconds: a few steps, every artifact, one held-out image."""
    return dataclasses.replace(
        cfg,
        steps=min(cfg.steps, 3),
        log_every=1,
        sample_every=1,
        eval_every=0,
        checkpoint_every=2,
        eval_max_images=1,
    )


def generator_config(cfg: SRConfig) -> SRResNetConfig:
    return SRResNetConfig(scale=cfg.scale, channels=3, width=cfg.g_width, blocks=cfg.g_blocks)


def load_stage1(cfg: SRConfig, expected: SRResNetConfig) -> nn.Module:
    """The srgan stage's starting point: a stage-1 run's generator, checked against this recipe."""
    path = Path(cfg.init_from).expanduser()
    if path.is_dir():
        path = path / "generator.pt"
    if not path.is_file():
        raise RunError(f"init_from: {path} not found (a stage-1 run directory or its generator.pt)")
    try:
        generator, meta = load_generator(path)
    except Exception as exc:  # torch.load raises many types for a file that is not a generator
        raise RunError(f"init_from: {path} is not a readable generator file ({exc})") from exc
    if meta.get("kind") != "srresnet":
        raise RunError(f"init_from: {path} holds a {meta.get('kind')!r} generator, not an SRResNet")
    saved = meta["config"]
    if saved["scale"] != expected.scale:
        raise ConfigError(
            f"scale: init_from {path} is a x{saved['scale']} model, "
            f"but this recipe has scale = {expected.scale}"
        )
    mismatched = [k for k in ("width", "blocks") if saved[k] != getattr(expected, k)]
    if mismatched:
        raise ConfigError(
            f"init_from {path}: the stage-1 generator has "
            + ", ".join(f"{k} = {saved[k]}" for k in mismatched)
            + f"; set g_{mismatched[0]} (and the others) to match"
        )
    return generator.train()


def train_sr(cfg: SRConfig, out_dir: Path, resume: bool = False, dry_run: bool = False) -> dict[str, Any]:
    """Run (or resume) super-resolution training; returns the final evaluation."""
    if dry_run:
        cfg = dry_run_config(cfg)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RunError("super-resolution training runs in one process; launch it without torchrun")
    with contextlib.ExitStack() as cleanup:
        return _train_sr(cfg, Path(out_dir), resume, cleanup)


def _train_sr(cfg: SRConfig, out_dir: Path, resume: bool, cleanup: contextlib.ExitStack) -> dict[str, Any]:
    device = pick_device(cfg.device)
    adversarial = cfg.stage == "srgan"

    # --- run directory: config, log file, metrics (after the cheap checks that can refuse the run) ---
    run = RunDir.prepare(out_dir, cfg, resume, RESUMABLE_CHANGES)
    torch.manual_seed(cfg.seed)
    g_config = generator_config(cfg)
    stage1 = load_stage1(cfg, g_config) if adversarial and run.resume_from is None else None
    run.write_config(cleanup)

    # --- data: HR images split once; random (LR, HR) crops for training ---
    images = load_hr_images(cfg.data, cfg.patch_size, cfg.bad_files, cfg.heldout_fraction, cfg.max_memory_mb)
    degradation = Degradation(cfg.degrade_blur, cfg.degrade_noise, cfg.degrade_jpeg)
    sampler = SRPairSampler(images.train, cfg.patch_size, cfg.scale, degradation, cfg.colour_augment)
    validation = images.evaluation_set("validation", cfg.eval_max_images)

    # --- models: G (from stage 1 for srgan), its EMA, D for srgan; optimisers ---
    G = (stage1 if stage1 is not None else SRResNetGenerator(g_config)).to(device)
    D = (
        PatchDiscriminator(PatchDiscriminatorConfig(3, cfg.d_width, cfg.spectral_norm)).to(device)
        if adversarial
        else None
    )
    ema = EMA(G, cfg.ema_decay, cfg.ema_start, cfg.ema_rampup) if cfg.ema_decay > 0 else None
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.g_lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.d_lr, betas=(cfg.beta1, cfg.beta2)) if D else None
    data_gen = torch.Generator().manual_seed(stream_seed(cfg.seed, 0, DATA_STREAM))
    start_step = 0
    if run.resume_from is not None:
        state = load_checkpoint(run.resume_from)
        G.load_state_dict(state["generator"])
        opt_g.load_state_dict(state["opt_g"])
        if ema is not None:
            ema.model.load_state_dict(state["generator_ema"])
        if D is not None and opt_d is not None:
            D.load_state_dict(state["discriminator"])
            opt_d.load_state_dict(state["opt_d"])
        data_gen.set_state(state["rng"]["data"])
        start_step = state["step"]
        run.resumed_at(start_step)
    served = ema.model if ema is not None else G  # the weights users will get
    log.info(
        "training x%d SRResNet G (%d params)%s, stage %s on %s (%d train / %d validation / %d test images), "
        "%d step(s) from %d, batch %d of %dpx crops, device %s",
        cfg.scale,
        sum(p.numel() for p in G.parameters()),
        f" / patch D ({sum(p.numel() for p in D.parameters())} params)" if D else "",
        cfg.stage,
        cfg.data,
        len(images.train),
        len(images.validation),
        len(images.test),
        cfg.steps,
        start_step,
        cfg.batch_size,
        cfg.patch_size,
        device,
    )

    def checkpoint_state(step: int, all_ranks: bool) -> dict[str, Any]:
        # one process: the same contents for a periodic checkpoint and one saved on Ctrl-C
        return {
            "generator": G.state_dict(),
            "generator_ema": ema.model.state_dict() if ema is not None else None,
            "discriminator": D.state_dict() if D is not None else None,
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict() if opt_d is not None else None,
            "rng": {"data": data_gen.get_state()},
            "data": images.summary(),
        }

    def write_samples(step: int, path: Path) -> None:
        hr = next(iter(validation.values()))
        triplet = upscale_triplet(served, hr, cfg.scale, cfg.eval_tile, cfg.eval_overlap, cfg.eval_batch)
        save_comparison(triplet, cfg.scale, path)

    def run_eval(step: int, final: bool = False) -> dict[str, Any]:
        # During training the validation images only; at the end the test images as well.
        t0 = time.perf_counter()
        result = evaluate_sets(
            served,
            images,
            ("validation", "test") if final else ("validation",),
            cfg.scale,
            cfg.eval_tile,
            cfg.eval_overlap,
            cfg.eval_batch,
            cfg.eval_max_images,
            out_dir / "eval" if final else None,
        )
        scalars = {k: v for k, v in result.items() if k != "per_image"}
        seconds = time.perf_counter() - t0
        run.metrics.write({"step": step, "event": "eval", **scalars, "eval_seconds": seconds})
        log.info("eval @ %d: %s", step, format_metrics(scalars))
        return {"step": step, **result}

    # --- the loop: progress bar, periodic samples / eval / checkpoint, Ctrl-C (training/loop.py) ---
    running = RunningMeans(samples_per_step=cfg.batch_size)
    with TrainingLoop(
        run,
        start_step,
        generator_kind="srresnet",
        generator_config=config_to_dict(g_config),
        checkpoint_state=checkpoint_state,
        write_samples=write_samples,
        evaluate=run_eval,
        plot=save_sr_training_plot,
    ) as loop:
        for step in loop.steps():
            G.train()
            scale = lr_scale(cfg, step)
            set_learning_rates([(opt_g, cfg.g_lr)] + ([(opt_d, cfg.d_lr)] if opt_d else []), scale)
            lr, hr = sampler.sample(cfg.batch_size, data_gen)  # (B, 3, p/s, p/s), (B, 3, p, p)
            lr, hr = lr.to(device), hr.to(device)
            sr = G(lr)  # (B, 3, p, p)
            stats: dict[str, float] = {}

            # (1) srgan only: D learns to tell HR crops from G's upscaled crops, patch by patch.
            if D is not None and opt_d is not None:
                real_logits, _ = D(hr)  # (B, 1, p/8, p/8)
                fake_logits, _ = D(sr.detach())
                d_loss = losses.discriminator_loss(cfg.adversarial_loss, real_logits, fake_logits)
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                d_grad = nn.utils.clip_grad_norm_(D.parameters(), cfg.grad_clip or math.inf)
                opt_d.step()
                with torch.no_grad():
                    correct = torch.cat([(real_logits > 0).flatten(), (fake_logits < 0).flatten()])
                stats.update(
                    d_loss=d_loss.item(), d_grad_norm=float(d_grad), d_accuracy=correct.float().mean().item()
                )

            # (2) G: the pixel loss, plus (srgan) the adversarial and feature losses through a frozen D.
            pixel = losses.pixel_loss(cfg.pixel_loss, sr, hr)
            g_loss = pixel if D is None else cfg.pixel_weight * pixel
            if D is not None:
                D.requires_grad_(False)
                fake_logits, fake_features = D(sr)
                with torch.no_grad():
                    real_logits, real_features = D(hr)
                g_adv = losses.generator_loss(cfg.adversarial_loss, real_logits, fake_logits)
                feature = losses.feature_loss(fake_features, real_features)
                g_loss = g_loss + cfg.adversarial_weight * g_adv + cfg.feature_weight * feature
                D.requires_grad_(True)
                stats.update(g_adv=g_adv.item(), feature_loss=feature.item())
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            g_grad = nn.utils.clip_grad_norm_(G.parameters(), cfg.grad_clip or math.inf)
            opt_g.step()
            if ema is not None:
                ema.update(G, step)

            # (3) bookkeeping: running means, then log / samples / eval / checkpoint when due
            with torch.no_grad():
                stats.update(pixel_loss=pixel.item(), g_loss=g_loss.item(), g_grad_norm=float(g_grad))
                stats["train_psnr"] = _batch_psnr(sr.detach(), hr)
            running.add(stats)
            done = step + 1
            if loop.due(done, cfg.log_every):
                record: dict[str, Any] = {"step": done, "event": "train", **running.flush()}
                record["lr_scale"] = scale
                loop.log(record, pixel=f"{record['pixel_loss']:.4f}")
            loop.periodic(done)

    # --- the end: generator.pt with the served weights, final evaluation on the validation and
    # test images (per-image comparisons under eval/validation/ and eval/test/), eval.json, plot ---
    return loop.finish(
        lambda path, quality: save_sr_generator(path, served, cfg, images, quality),
        final_eval=lambda: run_eval(cfg.steps, final=True),
    )


def save_sr_generator(
    path: Path, generator: nn.Module, cfg: SRConfig, images: HRImages, quality: dict[str, Any]
) -> None:
    training = {
        "task": "upscale",
        "stage": cfg.stage,
        "scale": cfg.scale,
        "loss": cfg.pixel_loss if cfg.stage == "sr_pixel" else f"{cfg.pixel_loss}+{cfg.adversarial_loss}",
        "steps": cfg.steps,
        "model": "srresnet",
        "data": cfg.data,
        "seed": cfg.seed,
        "batch_size": cfg.batch_size,
        "patch_size": cfg.patch_size,
        "init_from": cfg.init_from,
        "colour_augment": cfg.colour_augment,
        "degrade_blur": cfg.degrade_blur,
        "degrade_noise": cfg.degrade_noise,
        "degrade_jpeg": cfg.degrade_jpeg,
    }
    save_generator_file(path, generator, "srresnet", cfg.ema_decay > 0, images.summary(), training, quality)


def _batch_psnr(sr: torch.Tensor, hr: torch.Tensor) -> float:
    """PSNR (RGB, [0, 1]) of a training batch: a cheap progress signal, not the evaluation metric."""
    mse = float(((sr.clamp(0, 1) - hr) ** 2).mean())
    return 10 * math.log10(1 / max(mse, 1e-12))
