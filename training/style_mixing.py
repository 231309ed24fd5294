"""The style-mixing figure of StyleGAN (Karras et al. 2019, figure 3), for a style generator.

Three blocks, top to bottom: the coarse, middle and fine styles. In each block the top row holds
the column sources' images and the left column the row sources' images; the cell at (row, column)
is the column's image with the row's styles in that block's layers (so in the coarse block a
cell takes its pose and shape from the row and the rest from the column).
"""

from __future__ import annotations

import torch

from training.models.style import STYLE_GROUPS, StyleGenerator

BLANK = 1.0  # the empty corner of a block: white, in G's [-1, 1] range
NOISE_OFFSET = 1_000_003


@torch.no_grad()
def mixing_grid(
    G: StyleGenerator, row_seeds: list[int], col_seeds: list[int], psi: float = 1.0
) -> tuple[torch.Tensor, int]:
    """Images (3 * (rows + 1) * (cols + 1), C, H, W) in row-major order, and the number of grid
    rows. Each source's label (conditional G) is its seed modulo the classes; each cell keeps the
    noise images of its column source."""
    was_training = G.training
    G.eval()
    seeds = [*row_seeds, *col_seeds]
    device = G.const_device
    classes = G.config.num_classes
    z = torch.stack([torch.randn(G.config.latent_dim, generator=_seeded(s)) for s in seeds])
    labels = torch.tensor([s % classes for s in seeds], device=device) if classes else None
    w = G.truncate(G.mapping(z.to(device), labels), labels, psi)  # (S, w_dim)
    noise = [  # from another stream than the latents' (the seed offset)
        torch.stack([torch.randn(shape, generator=_seeded(s + NOISE_OFFSET)) for s in seeds]).to(device)
        for shape in G.noise_shapes
    ]
    sources = G.synthesis(w[:, None].repeat(1, G.num_ws, 1), noise)  # (S, C, H, W)
    rows, cols = len(row_seeds), len(col_seeds)
    blank = torch.full_like(sources[0], BLANK)
    cells: list[torch.Tensor] = []
    for group in STYLE_GROUPS:
        start, stop = G.style_groups()[group]
        # (rows * cols, num_ws, w_dim): the column's w everywhere, the row's in [start, stop)
        ws = w[rows:][None].repeat(rows, 1, 1).reshape(rows * cols, 1, -1).repeat(1, G.num_ws, 1)
        ws[:, start:stop] = w[:rows].repeat_interleave(cols, dim=0)[:, None]
        cell_noise = [n[rows:].repeat(rows, 1, 1, 1) for n in noise]
        mixed = G.synthesis(ws, cell_noise).reshape(rows, cols, *sources.shape[1:])
        cells += [blank, *sources[rows:]]
        for r in range(rows):
            cells += [sources[r], *mixed[r]]
    G.train(was_training)
    return torch.stack(cells).cpu(), len(STYLE_GROUPS) * (rows + 1)


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
