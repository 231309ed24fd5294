"""One step of GAN training: `d_steps` discriminator updates, then one generator update, and the
step's statistics for the log. Draws only from the run's two random streams (training/gan_state.py)
and always in the same order, so a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from training import regularizers as reg
from training.config import TrainConfig
from training.data.base import Sampler
from training.gan_state import GAN, RandomStreams
from training.losses import discriminator_loss, generator_loss, uses_probabilities
from training.models.style import StyleGenerator


class GANStep:
    """`step(index, sigma)` runs one training step with instance noise `sigma` and returns its
    statistics. Holds the count of D updates so far (lazy R1 runs on every r1_every-th)."""

    def __init__(
        self,
        cfg: TrainConfig,
        gan: GAN,
        sampler: Sampler,
        streams: RandomStreams,
        batch: int,
        device: torch.device,
        start_step: int,
    ) -> None:
        self.cfg = cfg
        self.gan = gan
        self.sampler = sampler
        self.streams = streams
        self.batch = batch  # per process
        self.device = device
        self.d_steps = cfg.d_steps or 1
        self.d_updates = start_step * self.d_steps
        G_plain = gan.G_plain
        self.style = G_plain if isinstance(G_plain, StyleGenerator) else None

    def random_labels(self, n: int) -> torch.Tensor | None:
        if not self.gan.num_classes:
            return None
        return torch.randint(0, self.gan.num_classes, (n,), generator=self.streams.noise).to(self.device)

    def latents(self, n: int) -> torch.Tensor:
        return torch.randn((n, self.cfg.latent_dim), generator=self.streams.noise).to(self.device)

    def fakes(self, labels: torch.Tensor | None) -> torch.Tensor:
        """G(z) for a batch of fresh latents: (B, *shape). A style G also draws its noise images
        from the noise stream, and in a `style_mixing` share of batches switches to a second
        latent's w at a random layer (StyleGAN's mixing regularisation)."""
        G, noise_gen, batch = self.gan.G, self.streams.noise, self.batch
        z = self.latents(batch)
        if self.style is None:
            return G(z, labels)
        kwargs: dict[str, Any] = {"noise_generator": noise_gen}
        if torch.rand((), generator=noise_gen).item() < self.cfg.style_mixing:
            cutoff = int(torch.randint(1, self.style.num_ws, (), generator=noise_gen))
            kwargs.update(mix_z=self.latents(batch), mix_cutoff=cutoff)
        return G(z, labels, **kwargs)

    def __call__(self, step: int, sigma: float) -> dict[str, float]:
        cfg, gan, batch, device, noise_gen = self.cfg, self.gan, self.batch, self.device, self.streams.noise
        G, D, D_plain = gan.G, gan.D, gan.D_plain
        G.train()
        D.train()

        # (1) D: d_steps updates to tell real x from G(z). Real and fake share one forward
        # pass (DDP-friendly, D has no BatchNorm); fakes get the real batch's labels.
        for _ in range(self.d_steps):
            real, real_y = self.sampler.sample(batch, self.streams.data)  # (B, *shape), (B,) | None
            real = real.to(device)
            real_y = real_y.to(device) if real_y is not None else None
            with torch.no_grad():
                fake = self.fakes(real_y)  # (B, *shape)
            real_in = reg.add_instance_noise(real, sigma, noise_gen)
            fake_in = reg.add_instance_noise(fake, sigma, noise_gen)
            # lazy R1 (StyleGAN2): every r1_every-th D step, weighted by r1_every
            lazy_r1 = cfg.r1_gamma > 0 and self.d_updates % cfg.r1_every == 0
            self.d_updates += 1
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
            gan.opt_d.zero_grad(set_to_none=True)
            d_total.backward()
            d_grad = nn.utils.clip_grad_norm_(D.parameters(), cfg.grad_clip or math.inf)
            gan.opt_d.step()
            if cfg.loss == "wgan":
                reg.clip_weights(D, cfg.clip_value)

        # (2) G: one update to make D score G(z) as real. D's weights are frozen and its
        # unwrapped module is used, so no gradient of D is computed or synchronised.
        gen_y = self.random_labels(batch)
        fake = self.fakes(gen_y)  # (B, *shape)
        D_plain.requires_grad_(False)
        g_scores = D_plain(reg.add_instance_noise(fake, sigma, noise_gen), gen_y)  # (B,)
        g_loss = generator_loss(cfg.loss, g_scores)
        gan.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        g_grad = nn.utils.clip_grad_norm_(G.parameters(), cfg.grad_clip or math.inf)
        gan.opt_g.step()
        D_plain.requires_grad_(True)
        if gan.ema is not None:
            gan.ema.update(gan.G_plain, step)

        # (3) the step's statistics, from its last D update and its G update
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
        return stats


def _d_output(loss: str, scores: torch.Tensor) -> float:
    """D(x) as a probability for the BCE losses, the raw critic score otherwise."""
    return (torch.sigmoid(scores) if uses_probabilities(loss) else scores).mean().item()
