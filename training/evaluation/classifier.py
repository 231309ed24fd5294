"""The evaluation network: a small CNN trained once per dataset on the real training split.

Its penultimate features (64-d) are the space for the Frechet distance and precision/recall, and
its predictions score conditional generators. Datasets without labels get the same network with
fixed random weights (random features still separate image statistics, but the numbers are only
comparable between runs on the same data). Trained networks are cached by dataset fingerprint.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.data.base import ImageSplits

log = logging.getLogger(__name__)
CLASSIFIER_VERSION = 1
FEATURES = 64


class FeatureClassifier(nn.Module):
    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        # (N, C, R, R) -> (N, 32, R/2) -> (N, 64, R/4) -> (N, 64, 4, 4) -> (N, 64) features
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(64 * 16, FEATURES),
            nn.ReLU(),
        )
        self.classify = nn.Linear(FEATURES, max(num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


def cache_root(configured: str = "") -> Path:
    if configured:
        return Path(configured).expanduser()
    env = os.environ.get("GAN_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gan-serving"


def get_classifier(
    splits: ImageSplits, epochs: int, cache_dir: str = ""
) -> tuple[FeatureClassifier, dict[str, float | str]]:
    """The trained (or random-feature) network for these splits, from the cache when present."""
    channels = splits.info.shape[0]
    labelled = splits.train_y is not None and splits.info.num_classes > 1
    # Fixed initial weights, without touching the caller's global RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = FeatureClassifier(channels, splits.info.num_classes if labelled else 0)
    if not labelled:
        return net.eval(), {"feature_net": "random"}
    key = f"classifier-v{CLASSIFIER_VERSION}-{splits.fingerprint()}-e{epochs}.pt"
    path = cache_root(cache_dir) / key
    if path.is_file():
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(payload["state_dict"])
            return net.eval(), dict(payload["info"])
        except Exception as exc:  # a broken cache entry is rebuilt, not fatal
            log.warning("ignoring unreadable classifier cache %s: %s", path, exc)
    info = _train(net, splits, epochs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"state_dict": net.state_dict(), "info": info}, tmp)
    os.replace(tmp, path)
    return net.eval(), info


def classification_accuracy_score(
    fake: torch.Tensor, labels: torch.Tensor, splits: ImageSplits, epochs: int
) -> float:
    """CAS (Ravuri & Vinyals 2019): the evaluation classifier's architecture and recipe, trained
    on generated images with the labels they were asked for, tested on the real held-out images.
    Beside the same classifier trained on real images (classifier_heldout_accuracy), it says how
    much of what the real data teaches a classifier the generated data teaches too."""
    synthetic = ImageSplits(splits.info, fake, labels, splits.heldout_x, splits.heldout_y)
    with torch.random.fork_rng(devices=[]):  # the training run's RNG is not disturbed
        torch.manual_seed(0)
        net = FeatureClassifier(splits.info.shape[0], splits.info.num_classes)
        info = _train(net, synthetic, epochs, "classifier trained on generated images")
    return float(info["classifier_heldout_accuracy"])


def _train(
    net: FeatureClassifier, splits: ImageSplits, epochs: int, what: str = "evaluation classifier"
) -> dict[str, float | str]:
    assert splits.train_y is not None and splits.heldout_y is not None
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = splits.train_x, splits.train_y
    net.train()
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=gen)
        for start in range(0, x.shape[0], 64):
            idx = order[start : start + 64]
            loss = F.cross_entropy(net(_jitter(x[idx], gen)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    accuracy = float((predict(net, splits.heldout_x) == splits.heldout_y).float().mean())
    log.info("%s: held-out accuracy %.3f", what, accuracy)
    return {"feature_net": "classifier", "classifier_heldout_accuracy": accuracy}


def _jitter(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 1/16 of the side: a classifier that tolerates small misplacement."""
    pad = max(1, x.shape[-1] // 16)
    padded = F.pad(x, (pad, pad, pad, pad), value=-1.0)
    dx, dy = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=gen))
    return padded[..., dy : dy + x.shape[-2], dx : dx + x.shape[-1]]


@torch.no_grad()
def features(net: FeatureClassifier, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    return torch.cat([net.features(x[i : i + batch]) for i in range(0, x.shape[0], batch)])


@torch.no_grad()
def predict(net: FeatureClassifier, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    return torch.cat([net(x[i : i + batch]).argmax(1) for i in range(0, x.shape[0], batch)])
