"""The EMA G's BatchNorm statistics recomputed for its own weights (standing statistics)."""

from __future__ import annotations

import torch

from training.ema import EMA, STANDING_BATCH, STANDING_SEED, batch_norms, standing_statistics
from training.models import build_generator

DCGAN = {"latent_dim": 8, "channels": 1, "resolution": 8, "width": 4, "num_classes": 3, "embed_dim": 4}
STYLE = {"latent_dim": 4, "w_dim": 8, "mapping_layers": 1, "channels": 1, "resolution": 8, "channel_base": 32}


def test_standing_statistics_are_the_average_over_the_generators_own_batches() -> None:
    torch.manual_seed(0)
    raw = build_generator("dcgan", DCGAN)
    ema = EMA(raw, decay=0.9)
    with torch.no_grad():  # the averaged weights drift away from the raw G's
        for p in raw.parameters():
            p.add_(0.5 * torch.randn_like(p))
    ema.update(raw, step=10)
    first = batch_norms(ema.model)[0]
    raw_mean = first.running_mean.clone()  # type: ignore[union-attr]
    before = torch.random.get_rng_state()
    assert standing_statistics(ema.model, batches=4)
    assert torch.equal(torch.random.get_rng_state(), before)  # the training's RNG untouched
    assert not ema.model.training and all(bn.momentum == 0.1 for bn in batch_norms(ema.model))
    assert not torch.allclose(first.running_mean, raw_mean)  # type: ignore[arg-type]

    # By hand: the first BatchNorm's input over the same 4 batches, averaged batch by batch.
    rng = torch.Generator().manual_seed(STANDING_SEED)
    copy = build_generator("dcgan", DCGAN)
    copy.load_state_dict(ema.model.state_dict())
    copy.train()
    copy_first = batch_norms(copy)[0]
    inputs: list[torch.Tensor] = []
    hook = copy_first.register_forward_hook(lambda m, args, out: inputs.append(args[0].detach()))
    with torch.no_grad():
        for i in range(4):
            z = torch.randn((STANDING_BATCH, 8), generator=rng)
            copy(z, (torch.arange(STANDING_BATCH) + i * STANDING_BATCH) % 3)
    hook.remove()
    expected = torch.stack([x.mean(0) for x in inputs]).mean(0)
    assert torch.allclose(first.running_mean, expected, atol=1e-5)  # type: ignore[arg-type]

    # The same every time, so samples and evaluations at different steps are comparable.
    again = first.running_mean.clone()  # type: ignore[union-attr]
    standing_statistics(ema.model, batches=4)
    assert torch.equal(first.running_mean, again)  # type: ignore[arg-type]
    # Off, or nothing to do: a G without BatchNorm (the style G, whose train mode would move w_avg).
    assert not standing_statistics(ema.model, batches=0)
    style = build_generator("style", STYLE)
    w_avg = style.w_avg.clone()  # type: ignore[operator]
    assert not standing_statistics(style, batches=4) and torch.equal(style.w_avg, w_avg)  # type: ignore[arg-type]
