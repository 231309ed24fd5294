"""The GAN training loop: D and G in a min-max game, read top to bottom.

One "step" is one generator update, preceded by `d_steps` discriminator updates. All randomness
after model initialisation comes from two explicit generators (data, noise) whose states are
checkpointed, so `--resume` reproduces an uninterrupted run exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from training import regularizers as reg
from training.artifacts import save_image_grid, save_scatter, save_training_plot
from training.checkpoint import load_checkpoint
from training.config import ConfigError, TrainConfig
from training.data import load_data
from training.data.base import DataInfo
from training.distributed import DistInfo, gather_to_main, init_distributed, shutdown, unwrap
from training.ema import EMA, standing_statistics
from training.evaluation import balanced_labels, evaluate, generate
from training.health import HealthMonitor, class_diversity, diversity, worst_class_ratio
from training.loop import RunDir, TrainingLoop
from training.losses import discriminator_loss, generator_loss, uses_probabilities
from training.models import (
    build_discriminator,
    build_generator,
    config_to_dict,
    save_generator_file,
)
from training.models.dcgan import DCGANDiscriminatorConfig, DCGANGeneratorConfig
from training.models.mlp import MLPDiscriminatorConfig, MLPGeneratorConfig
from training.models.style import StyleDiscriminatorConfig, StyleGenerator, StyleGeneratorConfig
from training.runtime import (
    BOOKKEEPING_KEYS,
    DATA_STREAM,
    NOISE_STREAM,
    RunError,
    RunningMeans,
    format_metrics,
    lr_scale,
    pick_device,
    set_learning_rates,
    stream_seed,
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


def network_configs(cfg: TrainConfig, info: DataInfo) -> tuple[Any, Any]:
    """G's and D's constructor arguments from the training config and the data's shape."""
    num_classes = info.num_classes if cfg.conditional else 0
    if cfg.model == "mlp":
        return (
            MLPGeneratorConfig(
                latent_dim=cfg.latent_dim,
                out_shape=info.shape,
                hidden=cfg.g_width,
                layers=cfg.mlp_layers,
                num_classes=num_classes,
                embed_dim=cfg.embed_dim,
                output_activation="tanh" if info.kind == "image" else "none",
            ),
            MLPDiscriminatorConfig(
                in_shape=info.shape,
                hidden=cfg.d_width,
                layers=cfg.mlp_layers,
                num_classes=num_classes,
                spectral_norm=cfg.spectral_norm,
            ),
        )
    channels = info.shape[0]
    if cfg.model == "style":
        return (
            StyleGeneratorConfig(
                latent_dim=cfg.latent_dim,
                w_dim=cfg.w_dim,
                mapping_layers=cfg.mapping_layers,
                mapping_lr_mul=cfg.mapping_lr_mul,
                channels=channels,
                resolution=cfg.resolution,
                channel_base=cfg.g_width * cfg.resolution,
                channel_max=cfg.channel_max,
                num_classes=num_classes,
                embed_dim=cfg.embed_dim,
            ),
            StyleDiscriminatorConfig(
                channels=channels,
                resolution=cfg.resolution,
                channel_base=cfg.d_width * cfg.resolution,
                channel_max=cfg.channel_max,
                num_classes=num_classes,
                mbstd_group=cfg.mbstd_group,
            ),
        )
    return (
        DCGANGeneratorConfig(
            latent_dim=cfg.latent_dim,
            channels=channels,
            resolution=cfg.resolution,
            width=cfg.g_width,
            num_classes=num_classes,
            embed_dim=cfg.embed_dim,
            upsample=cfg.upsample,
        ),
        DCGANDiscriminatorConfig(
            channels=channels,
            resolution=cfg.resolution,
            width=cfg.d_width,
            num_classes=num_classes,
            spectral_norm=cfg.spectral_norm,
        ),
    )


def make_optimizer(cfg: TrainConfig, params: Any, lr: float) -> torch.optim.Optimizer:
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    assert cfg.beta1 is not None and cfg.beta2 is not None
    return torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, cfg.beta2))


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
    main = dist_info.is_main
    device = pick_device(cfg.device, dist_info.local_rank)
    if cfg.batch_size % dist_info.world_size:
        raise ConfigError(
            f"batch_size: {cfg.batch_size} does not split over {dist_info.world_size} processes"
        )
    batch = cfg.batch_size // dist_info.world_size  # per process
    if cfg.model == "style" and cfg.mbstd_group and batch % cfg.mbstd_group:
        raise ConfigError(
            f"mbstd_group: the per-process batch {batch} is not a multiple of {cfg.mbstd_group}"
        )
    d_steps = cfg.d_steps or 1

    # --- run directory: config, log file, metrics (rank 0 writes) ---
    run = RunDir.prepare(out_dir, cfg, resume, RESUMABLE_CHANGES, dist_info)
    run.write_config(cleanup)

    # --- data: a sampler for training; fixed splits for evaluation ---
    data = load_data(cfg)
    info = data.info
    if main and info.skipped_files:
        log.warning("%d unreadable file(s) skipped (listed above)", len(info.skipped_files))

    # --- models, EMA of G, optimisers ---
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    g_config, d_config = network_configs(cfg, info)
    G = build_generator(cfg.model, config_to_dict(g_config)).to(device)
    D = build_discriminator(cfg.model, config_to_dict(d_config)).to(device)
    ema = EMA(G, cfg.ema_decay, cfg.ema_start, cfg.ema_rampup) if cfg.ema_decay > 0 else None
    assert cfg.g_lr is not None and cfg.d_lr is not None
    opt_g = make_optimizer(cfg, G.parameters(), cfg.g_lr)
    opt_d = make_optimizer(cfg, D.parameters(), cfg.d_lr)
    data_gen = torch.Generator().manual_seed(stream_seed(cfg.seed, dist_info.rank, DATA_STREAM))
    noise_gen = torch.Generator().manual_seed(stream_seed(cfg.seed, dist_info.rank, NOISE_STREAM))
    monitor = HealthMonitor(window=cfg.health_window, saturating=cfg.loss == "minimax")
    start_step = 0
    if run.resume_from is not None:
        state = load_checkpoint(run.resume_from)
        G.load_state_dict(state["generator"])
        D.load_state_dict(state["discriminator"])
        if ema is not None:
            ema.model.load_state_dict(state["generator_ema"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        rng = state["rng"][dist_info.rank] if dist_info.rank < len(state["rng"]) else None
        if rng is not None:
            data_gen.set_state(rng["data"])
            noise_gen.set_state(rng["noise"])
        else:  # a checkpoint saved on Ctrl-C under DDP holds rank 0's streams only
            data_gen.manual_seed(stream_seed(cfg.seed, dist_info.rank, DATA_STREAM, state["step"]))
            noise_gen.manual_seed(stream_seed(cfg.seed, dist_info.rank, NOISE_STREAM, state["step"]))
        monitor = HealthMonitor(**state["health"])
        start_step = state["step"]
        run.resumed_at(start_step)
    if dist_info.enabled:
        G = DDP(G, device_ids=[device.index] if device.type == "cuda" else None)
        D = DDP(D, device_ids=[device.index] if device.type == "cuda" else None)
    G_plain, D_plain = unwrap(G), unwrap(D)
    num_classes = g_config.num_classes
    conditional = num_classes > 0

    # --- fixed inputs for sample grids and the diversity check ---
    fixed_labels = balanced_labels(100, num_classes) if conditional else None
    real_x, real_y = data.sampler.sample(DIVERSITY_SAMPLES, torch.Generator().manual_seed(0))
    real_spread = diversity(real_x)
    # per class too: a conditional G can collapse inside each class and keep the pooled spread
    real_class_spread = class_diversity(real_x, real_y) if conditional and real_y is not None else {}
    if main:
        log.info(
            "training %s G (%d params) / D (%d params) on %s with %s loss, %d step(s) from %d, "
            "batch %d x %d process(es), device %s",
            cfg.model,
            sum(p.numel() for p in G_plain.parameters()),
            sum(p.numel() for p in D_plain.parameters()),
            info.name,
            cfg.loss,
            cfg.steps,
            start_step,
            batch,
            dist_info.world_size,
            device,
        )

    def random_labels(n: int) -> torch.Tensor | None:
        if not conditional:
            return None
        return torch.randint(0, num_classes, (n,), generator=noise_gen).to(device)

    def latents(n: int) -> torch.Tensor:
        return torch.randn((n, cfg.latent_dim), generator=noise_gen).to(device)

    style = G_plain if isinstance(G_plain, StyleGenerator) else None

    def fakes(labels: torch.Tensor | None) -> torch.Tensor:
        """G(z) for a batch of fresh latents: (B, *shape). A style G also draws its noise images
        from the noise stream, and in a `style_mixing` share of batches switches to a second
        latent's w at a random layer (StyleGAN's mixing regularisation)."""
        z = latents(batch)
        if style is None:
            return G(z, labels)
        kwargs: dict[str, Any] = {"noise_generator": noise_gen}
        if torch.rand((), generator=noise_gen).item() < cfg.style_mixing:
            cutoff = int(torch.randint(1, style.num_ws, (), generator=noise_gen))
            kwargs.update(mix_z=latents(batch), mix_cutoff=cutoff)
        return G(z, labels, **kwargs)

    def rng_snapshot() -> dict[str, torch.Tensor]:
        return {"data": data_gen.get_state(), "noise": noise_gen.get_state()}

    def checkpoint_state(step: int, all_ranks: bool) -> dict[str, Any]:
        if all_ranks:  # every rank's random streams, so that each rank resumes its own
            rng_states = gather_to_main(rng_snapshot(), dist_info)
            if dist_info.enabled:
                _check_replicas(G_plain, D_plain, dist_info, step)
        else:  # Ctrl-C: no collectives here, the other ranks may be gone
            rng_states = [rng_snapshot()]
        return {
            "generator": G_plain.state_dict(),
            "discriminator": D_plain.state_dict(),
            "generator_ema": ema.model.state_dict() if ema is not None else None,
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "rng": rng_states,
            "health": dataclasses.asdict(monitor),
            "data": info.summary(),
        }

    served = ema.model if ema is not None else G_plain  # the weights users will get

    def ready_to_serve() -> None:
        """The EMA G's BatchNorm statistics for its own weights, before it is sampled, evaluated
        or saved (each EMA update copies the raw G's again, so training is unaffected)."""
        if ema is not None:
            standing_statistics(ema.model, cfg.standing_batches)

    def write_samples(step: int, path: Path) -> None:
        ready_to_serve()
        if info.kind == "toy":
            real = data.sampler.sample(1000, torch.Generator().manual_seed(0))[0]
            fake = generate(served, 1000, seed=cfg.seed)
            save_scatter(fake, real, path, f"step {step}")
        else:
            images = generate(served, 100 if conditional else 64, seed=cfg.seed, labels=fixed_labels)
            rows = min(num_classes, 10) if conditional else 8
            if conditional:
                # one row per class: (100,) labels cycle 0..C-1, so reorder by label
                order = torch.argsort(fixed_labels[: images.shape[0]], stable=True)  # type: ignore[index]
                images = images[order][: rows * 10]
            save_image_grid(images, rows, path)
            if isinstance(served, StyleGenerator):  # the style-mixing figure beside the samples
                cells, grid_rows = mixing_grid(served, MIXING_ROWS, MIXING_COLUMNS)
                save_image_grid(cells, grid_rows, path.with_name(path.name.replace("step_", "mixing_")))
                save_image_grid(cells, grid_rows, path.with_name("mixing_latest.png"))

    def run_eval(step: int, final: bool = False) -> dict[str, Any]:
        ready_to_serve()
        t0 = time.perf_counter()
        result = evaluate(
            served,
            data,
            cfg.eval_samples,
            cfg.classifier_epochs,
            cfg.cache_dir,
            cas=final,
            accuracy_draws=cfg.accuracy_draws,
        )
        record = {"step": step, "event": "eval", **result, "eval_seconds": time.perf_counter() - t0}
        run.metrics.write(record)
        log.info("eval @ %d: %s", step, format_metrics(result))
        return record

    # --- the loop: progress bar, periodic samples / eval / checkpoint, Ctrl-C (training/loop.py) ---
    running = RunningMeans(samples_per_step=d_steps * cfg.batch_size)
    d_updates = start_step * d_steps  # D steps so far: lazy R1 runs on every r1_every-th
    with TrainingLoop(
        run,
        start_step,
        generator_kind=cfg.model,
        generator_config=config_to_dict(g_config),
        checkpoint_state=checkpoint_state,
        write_samples=write_samples,
        evaluate=run_eval,
        plot=save_training_plot,
    ) as loop:
        for step in loop.steps():
            G.train()
            D.train()
            sigma = reg.instance_noise_std(cfg.instance_noise, cfg.instance_noise_anneal_steps, step)
            scale = lr_scale(cfg, step)
            set_learning_rates([(opt_g, cfg.g_lr), (opt_d, cfg.d_lr)], scale)

            # (1) D: d_steps updates to tell real x from G(z). Real and fake share one forward
            # pass (DDP-friendly, D has no BatchNorm); fakes get the real batch's labels.
            for _ in range(d_steps):
                real, real_y = data.sampler.sample(batch, data_gen)  # (B, *shape), (B,) | None
                real = real.to(device)
                real_y = real_y.to(device) if real_y is not None else None
                with torch.no_grad():
                    fake = fakes(real_y)  # (B, *shape)
                real_in = reg.add_instance_noise(real, sigma, noise_gen)
                fake_in = reg.add_instance_noise(fake, sigma, noise_gen)
                # lazy R1 (StyleGAN2): every r1_every-th D step, weighted by r1_every
                lazy_r1 = cfg.r1_gamma > 0 and d_updates % cfg.r1_every == 0
                d_updates += 1
                if lazy_r1:
                    real_in.requires_grad_(True)
                parts = [real_in, fake_in]
                if cfg.loss == "wgan-gp":
                    parts.append(reg.interpolate(real_in.detach(), fake_in, noise_gen))
                labels = torch.cat([real_y] * len(parts)) if real_y is not None else None
                scores = D(torch.cat(parts), labels)  # (len(parts) * B,)
                d_real, d_fake = scores[:batch], scores[batch : 2 * batch]
                d_adv = discriminator_loss(cfg.loss, d_real, d_fake, cfg.label_smoothing)
                d_total = d_adv
                gp = r1 = torch.zeros((), device=device)
                if cfg.loss == "wgan-gp":
                    gp = reg.gradient_penalty(reg.input_gradient(scores[2 * batch :], parts[2]))
                    d_total = d_total + cfg.gp_lambda * gp
                if lazy_r1:
                    r1 = reg.r1_penalty(reg.input_gradient(d_real, real_in))
                    d_total = d_total + 0.5 * cfg.r1_gamma * cfg.r1_every * r1
                opt_d.zero_grad(set_to_none=True)
                d_total.backward()
                d_grad = nn.utils.clip_grad_norm_(D.parameters(), cfg.grad_clip or math.inf)
                opt_d.step()
                if cfg.loss == "wgan":
                    reg.clip_weights(D, cfg.clip_value)

            # (2) G: one update to make D score G(z) as real. D's weights are frozen and its
            # unwrapped module is used, so no gradient of D is computed or synchronised.
            gen_y = random_labels(batch)
            fake = fakes(gen_y)  # (B, *shape)
            D_plain.requires_grad_(False)
            g_scores = D_plain(reg.add_instance_noise(fake, sigma, noise_gen), gen_y)  # (B,)
            g_loss = generator_loss(cfg.loss, g_scores)
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            g_grad = nn.utils.clip_grad_norm_(G.parameters(), cfg.grad_clip or math.inf)
            opt_g.step()
            D_plain.requires_grad_(True)
            if ema is not None:
                ema.update(G_plain, step)

            # (3) bookkeeping: running means, then log (with the health checks), then samples /
            # eval / checkpoint when due
            with torch.no_grad():
                stats = {
                    "d_loss": d_adv.item(),
                    "g_loss": g_loss.item(),
                    "d_real": _d_output(cfg.loss, d_real),
                    "d_fake": _d_output(cfg.loss, d_fake),
                    "g_grad_norm": float(g_grad),
                    "d_grad_norm": float(d_grad),
                }
                if cfg.loss != "wgan" and cfg.loss != "wgan-gp":
                    correct = torch.cat([d_real > 0, d_fake < 0]).float().mean()
                    stats["d_accuracy"] = correct.item()
                if cfg.loss == "wgan-gp":
                    stats["gp"] = gp.item()
                if lazy_r1:
                    stats["r1"] = r1.item()
            running.add(stats)
            done = step + 1
            if loop.due(done, cfg.log_every):
                record: dict[str, Any] = {"step": done, "event": "train", **running.flush()}
                record["instance_noise"] = sigma
                record["lr_scale"] = scale
                spread_labels = _cycle(fixed_labels, DIVERSITY_SAMPLES)
                samples = generate(G_plain, DIVERSITY_SAMPLES, seed=cfg.seed + 1, labels=spread_labels)
                record["diversity_ratio"] = diversity(samples) / max(real_spread, 1e-12)
                if real_class_spread and spread_labels is not None:
                    worst = worst_class_ratio(class_diversity(samples, spread_labels), real_class_spread)
                    if worst is not None:
                        record["class_diversity_worst"], record["class_diversity_ratio"] = worst
                for warning in monitor.update(record):
                    if main:
                        log.warning("step %d: %s", done, warning.message)
                        run.metrics.write(warning.record(done))
                loop.log(record, d=f"{record['d_loss']:.3f}", g=f"{record['g_loss']:.3f}")
            loop.periodic(done)

    # --- the end (rank 0): generator.pt with the served weights, final evaluation, eval.json, plot ---
    def save_served(path: Path, quality: dict[str, Any]) -> None:
        ready_to_serve()
        save_generator(path, served, cfg, info, quality)

    return loop.finish(save_served, final_eval=lambda: run_eval(cfg.steps, final=True))


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


def _check_replicas(G: nn.Module, D: nn.Module, dist_info: DistInfo, step: int) -> None:
    """DDP keeps every process's G and D identical; a mismatch means the gradients were not
    synchronised, and the checkpoint would hold one process's drifted copy."""
    with torch.no_grad():
        sums = [float(sum(p.double().sum() for p in m.parameters())) for m in (G, D)]
    everyone = gather_to_main(sums, dist_info)
    if any(
        not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
        for s in everyone
        for a, b in zip(s, sums, strict=True)
    ):
        raise RunError(f"step {step}: DDP replicas diverged (parameter sums per rank: {everyone})")


def _d_output(loss: str, scores: torch.Tensor) -> float:
    """D(x) as a probability for the BCE losses, the raw critic score otherwise."""
    return (torch.sigmoid(scores) if uses_probabilities(loss) else scores).mean().item()


def _cycle(labels: torch.Tensor | None, n: int) -> torch.Tensor | None:
    return None if labels is None else labels.repeat(math.ceil(n / labels.shape[0]))[:n]
