"""Detects the classic GAN failure modes from the logged training signals.

Each check looks at the last `window` logged points (each an average over `log_every` steps):
- vanishing_gradients: D separates real from fake almost perfectly while G's gradient norm has
  collapsed to a small fraction of its early level (the saturating-loss failure, Goodfellow 2014).
- mode_collapse: the spread of generated samples (mean pairwise distance) falls far below that of
  real samples; for a conditional G also within each class (`class_diversity_ratio`, the worst
  class's spread over its real spread), since a G that draws one stroke per class keeps the pooled
  spread of ten different digits.
- non_convergence: G's loss swings widely around a flat level instead of settling or trending.
A warning is raised when a condition starts and re-armed once it has cleared.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

VANISHING_GRAD_RATIO = 0.01  # G grad norm below 1 % of its early median
VANISHING_D_ACCURACY = 0.99  # while D is right on at least 99 % of real and fake samples
COLLAPSE_DIVERSITY_RATIO = 0.35  # generated spread below 35 % of the real spread
COLLAPSE_CLEAR_RATIO = 0.6  # ... and reported again only after it has recovered above 60 %
OSCILLATION_CV = 0.5  # std over the window above half the loss's typical magnitude
SATURATED_D_FAKE = 0.01  # minimax: mean D(G(z)) below this leaves G ~1 % of its gradient
REFERENCE_POINTS = 5  # logged points that define "early" for gradient norms


@dataclass
class HealthWarning:
    kind: str
    message: str

    def record(self, step: int) -> dict[str, object]:
        return {"step": step, "event": "warning", "kind": self.kind, "message": self.message}


@dataclass
class HealthMonitor:
    window: int = 20
    history: list[dict[str, float]] = field(default_factory=list)
    active: set[str] = field(default_factory=set)
    g_grad_reference: float | None = None
    points_seen: int = 0
    saturating: bool = False  # minimax loss: G's gradient is proportional to D(G(z)) itself

    def update(self, point: dict[str, float]) -> list[HealthWarning]:
        """Feed one logged point (g_loss, g_grad_norm, d_accuracy, diversity_ratio, ...)."""
        self.points_seen += 1
        self.history.append(point)
        self.history = self.history[-max(self.window, REFERENCE_POINTS) :]
        if self.g_grad_reference is None and len(self.history) >= REFERENCE_POINTS:
            self.g_grad_reference = float(
                np.median([p["g_grad_norm"] for p in self.history[:REFERENCE_POINTS]])
            )
        found = {
            "vanishing_gradients": self._vanishing(point),
            "mode_collapse": self._collapse(point),
            "non_convergence": self._oscillating(),
        }
        warnings = []
        for kind, message in found.items():
            if message and kind not in self.active:
                self.active.add(kind)
                warnings.append(HealthWarning(kind, message))
            elif not message:
                self.active.discard(kind)
        return warnings

    def _vanishing(self, p: dict[str, float]) -> str | None:
        acc = p.get("d_accuracy")
        if acc is None or acc < VANISHING_D_ACCURACY:
            return None
        reference = self.g_grad_reference
        collapsed = reference is not None and p["g_grad_norm"] < VANISHING_GRAD_RATIO * reference
        # With the saturating loss d/dlogit log(1 - D(G(z))) = -D(G(z)): once D rejects every fake
        # the gradient is gone, even if it was already gone when the early reference was taken.
        saturated = self.saturating and p.get("d_fake", 1.0) < SATURATED_D_FAKE
        if not (collapsed or saturated):
            return None
        early = f" ({p['g_grad_norm'] / reference:.1e} of its early level)" if reference else ""
        return (
            f"vanishing generator gradients: |grad G| = {p['g_grad_norm']:.2e}{early}, "
            f"D(G(z)) = {p.get('d_fake', float('nan')):.2g}, D right on {acc:.1%} of samples; "
            "try the nonsaturating loss, instance noise, or a weaker D"
        )

    def _collapse(self, p: dict[str, float]) -> str | None:
        ratio = p.get("diversity_ratio")
        # A freshly initialised G maps every z close to one point; that is not a collapse yet.
        if self.points_seen <= REFERENCE_POINTS:
            return None
        # Hysteresis: once reported, the warning clears only when the spread has clearly recovered,
        # so a ratio hovering around the threshold does not repeat the warning at every dip.
        limit = COLLAPSE_CLEAR_RATIO if "mode_collapse" in self.active else COLLAPSE_DIVERSITY_RATIO
        advice = "try a lower G learning rate, more D steps, wgan-gp, or spectral norm"
        if ratio is not None and ratio < limit:
            return f"mode collapse: generated samples spread {ratio:.0%} as much as real ones; {advice}"
        within = p.get("class_diversity_ratio")
        if within is not None and within < limit:
            label = int(p.get("class_diversity_worst", -1))
            return (
                f"mode collapse within class {label}: its generated samples spread {within:.0%} as much "
                f"as its real ones; {advice}"
            )
        return None

    def _oscillating(self) -> str | None:
        if len(self.history) < self.window:
            return None
        g = np.array([p["g_loss"] for p in self.history[-self.window :]])
        d = np.array([p["d_loss"] for p in self.history[-self.window :]])
        t = np.arange(len(g))
        trend = abs(np.polyfit(t, g, 1)[0]) * len(g)  # change explained by a straight line
        spread = g.std()
        scale = max(abs(g.mean()), abs(d.mean()), 0.1)
        if spread > OSCILLATION_CV * scale and trend < spread:
            return (
                f"non-convergence: G loss oscillates (std {spread:.3g} around {g.mean():.3g}) "
                f"over the last {self.window} log points without a trend; try a lower learning "
                "rate, TTUR, gradient penalty, or EMA of G"
            )
        return None


@torch.no_grad()
def diversity(samples: torch.Tensor) -> float:
    """Mean pairwise L2 distance between samples (N, ...), the spread used for collapse checks."""
    flat = samples.flatten(1).double()
    n = flat.shape[0]
    return float(torch.cdist(flat, flat).sum() / (n * (n - 1)))


@torch.no_grad()
def class_diversity(samples: torch.Tensor, labels: torch.Tensor) -> dict[int, float]:
    """Each class's spread (mean pairwise L2 distance among its samples); classes with fewer than
    two samples are left out."""
    return {
        int(label): diversity(samples[labels == label])
        for label in labels.unique()
        if int((labels == label).sum()) >= 2
    }


def worst_class_ratio(generated: dict[int, float], real: dict[int, float]) -> tuple[int, float] | None:
    """(class, generated spread / real spread) of the class whose spread fell most."""
    ratios = {c: generated[c] / max(real[c], 1e-12) for c in generated if c in real}
    if not ratios:
        return None
    worst = min(ratios, key=lambda c: ratios[c])
    return worst, ratios[worst]
