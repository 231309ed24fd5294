"""Quality of a generator: mode coverage on toy data; accuracy, FD and precision/recall on images."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from training.config import ACCURACY_DRAWS
from training.data import LoadedData
from training.evaluation.bootstrap import bootstrap_interval
from training.evaluation.classifier import (
    classification_accuracy_score,
    features,
    get_classifier,
    predict,
)
from training.evaluation.frechet import PR_NEIGHBOURS
from training.evaluation.matched import matched_quality, smallest_heldout
from training.evaluation.memorisation import memorisation
from training.evaluation.per_class import per_class_quality
from training.evaluation.toy import toy_quality

log = logging.getLogger(__name__)
EVAL_SEED = 1234  # the same latents at every evaluation, so numbers are comparable across steps


@torch.no_grad()
def generate(
    generator: nn.Module,
    n: int,
    seed: int = EVAL_SEED,
    labels: torch.Tensor | None = None,
    batch: int = 500,
) -> torch.Tensor:
    """n samples from G in eval mode, on G's device, returned on the CPU: (n, *sample_shape)."""
    device = next(generator.parameters()).device
    config: Any = generator.config  # nn.Module attributes are untyped; our networks all carry .config
    latent_dim: int = config.latent_dim
    z = torch.randn((n, latent_dim), generator=torch.Generator().manual_seed(seed))
    was_training = generator.training
    generator.eval()
    out = []
    # A style G draws its noise images from the global RNG: seeded here, so that an evaluation
    # is repeatable, and restored after, so that it does not disturb anything else.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for i in range(0, n, batch):
            y = labels[i : i + batch].to(device) if labels is not None else None
            out.append(generator(z[i : i + batch].to(device), y).float().cpu())
    generator.train(was_training)
    return torch.cat(out)


def balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    return torch.arange(n) % num_classes


def evaluate(
    generator: nn.Module,
    data: LoadedData,
    eval_samples: int = 2500,
    classifier_epochs: int = 20,
    cache_dir: str = "",
    cas: bool = False,
    accuracy_draws: int = ACCURACY_DRAWS,
) -> dict[str, Any]:
    """cas: also the Classification Accuracy Score (a classifier trained on the samples; about as
    long as training the evaluation classifier, so for final evaluations). accuracy_draws: the
    accuracy's samples, in multiples of the training split's size (a dry run takes 1: most of a
    conditional model's evaluation time goes into drawing and classifying them)."""
    info = data.info
    if info.kind == "toy":
        assert info.modes is not None
        return dict(toy_quality(generate(generator, eval_samples), info.modes, info.mode_std))

    splits = data.splits
    assert splits is not None
    net, net_info = get_classifier(splits, classifier_epochs, cache_dir)
    config: Any = generator.config
    num_classes: int = config.num_classes
    n = splits.train_x.shape[0]
    labels = balanced_labels(n, num_classes) if num_classes > 0 else None
    fake = generate(generator, n, labels=labels)

    real_heldout = features(net, splits.heldout_x).numpy()
    real_train = features(net, splits.train_x).numpy()
    fake_features = features(net, fake).numpy()
    result: dict[str, Any] = {**net_info, "eval_samples": n}
    if real_heldout.shape[0] >= smallest_heldout(PR_NEIGHBOURS):
        result.update(matched_quality(real_heldout, fake_features, PR_NEIGHBOURS))
    else:  # a tiny folder: each half of the held-out images must be a k-NN manifold
        log.warning(
            "FD and precision/recall skipped: %d held-out image(s), need %d",
            real_heldout.shape[0],
            smallest_heldout(PR_NEIGHBOURS),
        )
    if labels is not None and net_info.get("feature_net") == "classifier":
        # More samples, from other latents, after the first n (which FD and precision/recall use
        # and which stay as they were).
        hits = predict(net, fake) == labels
        if accuracy_draws > 1:
            more = balanced_labels(n * accuracy_draws, num_classes)[n:]
            extra = generate(generator, more.shape[0], seed=EVAL_SEED + 1, labels=more)
            hits = torch.cat([hits, predict(net, extra) == more])
        right = hits.double().numpy()
        result["accuracy"] = float(right.mean())
        result["accuracy_ci95"] = bootstrap_interval(lambda i: float(right[i].mean()), right.shape[0])
        result["accuracy_samples"] = right.shape[0]
        if cas:
            result["cas"] = classification_accuracy_score(fake, labels, splits, classifier_epochs)
        if splits.train_y is not None and splits.heldout_y is not None:
            result.update(
                per_class_quality(
                    real_heldout,
                    splits.heldout_y.numpy(),
                    real_train,
                    splits.train_y.numpy(),
                    fake_features,
                    labels.numpy(),
                )
            )
    result.update(memorisation(fake, splits.train_x, splits.heldout_x))
    return result
