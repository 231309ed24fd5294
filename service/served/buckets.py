"""The batch sizes a model runs (its buckets), and padding a formed batch up to one.

On a GPU a batch of 37 rows costs about what one of 64 costs (the device is wider than either),
while every new batch shape costs a first run (cuDNN's choice of algorithms, memory, a CUDA graph
each): so batches are padded up to a few sizes, powers of two by default, each warmed up before
the model serves. On a CPU a padded row costs as much as a real one: every size is its own bucket
there and nothing is padded. Padding repeats the batch's last row in each batched input (a row the
model can run, unlike zeros for some inputs); the padded rows' outputs are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from service.config import parse_buckets


class BatchBuckets:
    """The sizes a model's batches are run at, up to its largest batch."""

    def __init__(self, sizes: Iterable[int]) -> None:
        self.sizes = tuple(sorted(set(sizes)))
        if not self.sizes or self.sizes[0] < 1:
            raise ValueError(f"batch buckets must be sizes of at least 1, got {self.sizes}")

    @classmethod
    def plan(cls, setting: str, on_gpu: bool, largest: int) -> BatchBuckets:
        """The buckets for a model whose batches hold at most `largest` rows: the setting's sizes
        up to `largest`, or the provider's default; `largest` itself is always one."""
        chosen = parse_buckets(setting)
        if chosen:
            sizes = [size for size in chosen if size < largest]
        elif on_gpu:
            sizes = [1 << k for k in range(largest.bit_length()) if 1 << k < largest]
        else:
            sizes = list(range(1, largest))
        return cls([*sizes, largest])

    @property
    def largest(self) -> int:
        return self.sizes[-1]

    def fit(self, rows: int) -> int:
        """The smallest bucket that holds `rows` rows."""
        for size in self.sizes:
            if size >= rows:
                return size
        raise ValueError(f"a batch of {rows} rows is over the largest bucket ({self.largest})")

    def pad(
        self, feed: dict[str, np.ndarray], batched: frozenset[str]
    ) -> tuple[dict[str, np.ndarray], int | None, bool]:
        """The feed padded up to its bucket (inputs named in `batched` only: their first axis is
        the batch), its number of real rows (None: no input is batched), and whether it now has
        a bucket's size. A graph may be fed more rows than a batch holds (a style generator maps
        two latents for each image of a walk): such a run goes at its own size."""
        sizes = {len(feed[name]) for name in batched & feed.keys()}
        if not sizes:
            return feed, None, False
        if len(sizes) > 1:
            raise ValueError(f"the batched inputs have different row counts: {sorted(sizes)}")
        rows = sizes.pop()
        if not 0 < rows <= self.largest:
            return feed, rows, False
        size = self.fit(rows)
        if size == rows:
            return feed, rows, True
        padded = {
            name: np.concatenate([a, np.repeat(a[-1:], size - rows, axis=0)]) if name in batched else a
            for name, a in feed.items()
        }
        return padded, rows, True
