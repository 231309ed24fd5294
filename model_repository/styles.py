"""A style generator's inputs, the rules every consumer follows (the service, the model card, a
client that wants to reproduce an image). numpy only.

Two graphs (docs/export.md): the mapping, z (N, latent) [and labels (N,)] -> w (N, w_dim), and the
synthesis, ws (N, num_ws, w_dim) and one noise image per layer -> pixels. Between them, here:
truncation w' = w_avg + psi (w - w_avg) (w_avg per class for a conditional model); broadcasting w
to every layer, or style mixing (layer i's w from one source or another); the noise images, from a
noise seed (PCG64 seeded with [noise seed, NOISE_STREAM], layer by layer, float64 rounded to
float32) or zeros (`const`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from model_repository.latents import MAX_SEED

NOISE_STREAM = 0x6E6F697365  # "noise": keeps seed s's noise apart from seed s's latent
STYLE_GROUPS = ("coarse", "middle", "fine")
# Largest |value| accepted in a client's w: far beyond any mapping output, below fp16's range.
MAX_W_ABS = 1e4


@dataclass(frozen=True)
class StyleSpec:
    """What the manifest's `generator.style` says, as arrays."""

    w_dim: int
    num_ws: int
    w_avg: np.ndarray  # (classes or 1, w_dim) float32
    noise_names: tuple[str, ...]
    noise_shapes: tuple[tuple[int, ...], ...]  # one (1, r, r) per synthesis layer
    groups: dict[str, tuple[int, int]]  # coarse / middle / fine: [start, stop) ranges of the ws

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> StyleSpec:
        style = manifest["generator"]["style"]
        w_avg = np.asarray(style["w_avg"], dtype=np.float32)
        if w_avg.ndim != 2 or w_avg.shape[1] != style["w_dim"] or not np.isfinite(w_avg).all():
            raise ValueError(f"generator.style.w_avg: expected finite (classes, {style['w_dim']}) values")
        return cls(
            w_dim=int(style["w_dim"]),
            num_ws=int(style["num_ws"]),
            w_avg=w_avg,
            noise_names=tuple(n["name"] for n in style["noise"]),
            noise_shapes=tuple(tuple(int(d) for d in n["shape"]) for n in style["noise"]),
            groups={g: (int(r[0]), int(r[1])) for g, r in style["layers"].items()},
        )

    def truncate(self, w: np.ndarray, labels: np.ndarray | None, psi: np.ndarray | float) -> np.ndarray:
        """w (N, w_dim) -> (N, w_dim) float32 pulled toward each row's class mean; psi scalar or (N,)."""
        center = self.w_avg[labels] if labels is not None and len(self.w_avg) > 1 else self.w_avg[0]
        scale = np.asarray(psi, dtype=np.float32).reshape(-1, 1) if np.ndim(psi) else np.float32(psi)
        return (center + scale * (w - center)).astype(np.float32)

    def broadcast(self, w: np.ndarray) -> np.ndarray:
        """w (N, w_dim) -> ws (N, num_ws, w_dim): the same style at every layer."""
        return np.repeat(w[:, None, :], self.num_ws, axis=1)

    def layers_from_row(self, crossover: str | int) -> np.ndarray:
        """(num_ws,) bool: the layers whose style comes from a mixing grid's row source.

        A group name (coarse, middle, fine) takes that group's layers from the row and the rest
        from the column, as in StyleGAN's figure; an index k takes layers 0..k-1 from the row
        (0: the column's image, num_ws: the row's)."""
        mask = np.zeros(self.num_ws, dtype=np.bool_)
        if isinstance(crossover, str):
            if crossover not in self.groups:
                raise ValueError(f"crossover {crossover!r} is not one of {', '.join(self.groups)}")
            start, stop = self.groups[crossover]
            mask[start:stop] = True
        else:
            if not 0 <= crossover <= self.num_ws:
                raise ValueError(f"crossover must be a layer index from 0 to {self.num_ws}, got {crossover}")
            mask[:crossover] = True
        return mask

    def noise(self, noise_seeds: list[int | None]) -> list[np.ndarray]:
        """One (N, 1, r, r) float32 array per layer: row i from noise_seeds[i], or zeros for None."""
        arrays = [np.zeros((len(noise_seeds), *shape), dtype=np.float32) for shape in self.noise_shapes]
        for i, seed in enumerate(noise_seeds):
            if seed is not None:
                for array, image in zip(arrays, noise_from_seed(seed, self.noise_shapes), strict=True):
                    array[i] = image
        return arrays


def noise_from_seed(seed: int, shapes: tuple[tuple[int, ...], ...]) -> list[np.ndarray]:
    """The noise images of one image: one float32 array per shape, in layer order."""
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"noise seed must be in [0, {MAX_SEED}], got {seed}")
    rng = np.random.default_rng([seed, NOISE_STREAM])
    return [rng.standard_normal(shape).astype(np.float32) for shape in shapes]


def check_ws(ws: np.ndarray, num_ws: int, w_dim: int, what: str = "w") -> np.ndarray:
    """A w given by a client: (w_dim,) or (num_ws, w_dim), finite -> (num_ws, w_dim) float32."""
    if ws.dtype.kind != "f":
        raise ValueError(f"{what}: expected floating-point values, got dtype {ws.dtype}")
    if ws.shape == (w_dim,):
        ws = np.repeat(ws[None], num_ws, axis=0)
    if ws.shape != (num_ws, w_dim):
        raise ValueError(f"{what}: expected shape ({w_dim},) or ({num_ws}, {w_dim}), got {ws.shape}")
    with np.errstate(over="ignore"):
        ws = ws.astype(np.float32)
    if not np.isfinite(ws).all():
        raise ValueError(f"{what}: contains NaN or infinite values (as float32)")
    if np.abs(ws).max() > MAX_W_ABS:
        raise ValueError(f"{what}: values must be within +-{MAX_W_ABS:g} (a mapping network's w are near 1)")
    return ws
