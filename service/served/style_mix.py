"""StyleGAN's style-mixing grid (/mix), and the files of every style job.

`MixGrid` lays a grid's images out in one batch: the row sources, the column sources, then the
cells row by row, each cell with its row source's styles in the crossover's layers, its column
source's elsewhere, and its column source's noise; it makes the grid's provenance records, its
encode step, its figure, and splits the answer back into rows, columns and cells. Shared with
/generate: the client's ws decoded (`decode_ws`), the encode step of a style job
(`style_encoder`: one file per row, with its ws when asked) and an image's record fields.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from contract.errors import InvalidRequest
from contract.provenance import W_SOURCE, RecordHead
from model_repository.styles import StyleSpec, check_ws
from service.images.encoding import encode_image
from service.images.stamping import encode_recorded
from service.schemas.answers import StyleImage
from service.schemas.requests import MixRequest
from service.served.generator import Generator, class_name, int_column

NPY_HEADER_BYTES = 1024  # room for an .npy header around a w's values
Records = list[tuple[RecordHead, dict[str, Any]]]  # per image: the shared head, its own fields


@dataclass(frozen=True)
class MixSide:
    """One side of a mixing grid, its rows or its columns: one source each, a seed or a given w."""

    seeds: list[int | None]  # None: a given w
    labels: list[int | None]  # None: a given w, or an unconditional model
    ws: np.ndarray  # (S, num_ws, w_dim) float32: the given ws; zeros for seeds (mapped on the lane)
    noise_seeds: list[int | None]  # None: zero noise


@dataclass(frozen=True)
class MixGrid:
    """A mixing grid's images, in batch order: the row sources, the column sources, the cells."""

    request: MixRequest
    row_sources: MixSide
    col_sources: MixSide
    from_row: np.ndarray  # (num_ws,) bool: the layers a cell takes from its row source

    @property
    def n_rows(self) -> int:
        return len(self.row_sources.seeds)

    @property
    def n_cols(self) -> int:
        return len(self.col_sources.seeds)

    @property
    def cell_noise(self) -> list[int | None]:
        """Each cell's noise seed, row by row: its column source's (the cell's base image)."""
        return self.col_sources.noise_seeds * self.n_rows

    def inputs(self, style_inputs: Callable[..., dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The batch's inputs, made by the model's `style_inputs`: each source as a plain image,
        then each cell (A its row source, B its column source)."""
        rows, cols, n_rows, n_cols = self.row_sources, self.col_sources, self.n_rows, self.n_cols
        psi = self.request.truncation_psi
        sources = style_inputs(
            n_rows + n_cols,
            a_seed=int_column(rows.seeds + cols.seeds),
            a_w=np.concatenate([rows.ws, cols.ws]),
            labels=int_column(rows.labels + cols.labels),
            psi=psi,
            noise_seed=int_column(rows.noise_seeds + cols.noise_seeds),
        )
        cells = n_rows * n_cols
        cell_inputs = style_inputs(
            cells,
            a_seed=int_column([s for s in rows.seeds for _ in range(n_cols)]),
            a_w=np.repeat(rows.ws, n_cols, axis=0),
            labels=int_column([label for label in rows.labels for _ in range(n_cols)]),
            psi=psi,
            noise_seed=int_column(self.cell_noise),
            b_seed=int_column(cols.seeds * n_rows),
            b_w=np.tile(cols.ws, (n_rows, 1, 1)),
            b_labels=int_column(cols.labels * n_rows),
            t=np.ones(cells),
            from_a=self.from_row,
        )
        return {k: np.concatenate([sources[k], cell_inputs[k]]) for k in sources}

    def records(self, model: Generator, label: int | None) -> tuple[Records | None, str | None]:
        """The grid's records (None for npy): each row and column source's is the /generate
        record of its image (it is that image); each cell's names its row and column seeds, the
        crossover and the noise; the grid figure's, the whole request. `label`: the request's."""
        request, fmt = self.request, self.request.format
        seeded = model.record_head("/generate", fmt, source="seed", truncation_psi=request.truncation_psi)
        given = model.record_head("/generate", fmt, source=W_SOURCE)
        if seeded is None or given is None:
            return None, None
        sources = zip(
            self.row_sources.seeds + self.col_sources.seeds,
            self.row_sources.labels + self.col_sources.labels,
            self.row_sources.noise_seeds + self.col_sources.noise_seeds,
            strict=True,
        )
        records = [
            (
                given if seed is None else seeded,
                generate_fields(model.class_names, seed, source_label, noise_seed),
            )
            for seed, source_label, noise_seed in sources
        ]
        mix = {
            "source": "seed" if request.row_ws is None and request.col_ws is None else W_SOURCE,
            "crossover": request.crossover,
            "label": label,
            "label_name": class_name(model.class_names, label),
            "truncation_psi": request.truncation_psi,
        }
        cell = RecordHead.of("/mix", model.name, model.version, format=fmt, image="cell", **mix)
        for i, noise_seed in enumerate(self.cell_noise):
            own = {
                "row_seed": self.row_sources.seeds[i // self.n_cols],
                "col_seed": self.col_sources.seeds[i % self.n_cols],
            }
            records.append((cell, own | {"noise": noise_mode(noise_seed), "noise_seed": noise_seed}))
        if not request.grid:
            return records, None
        whole = {"row_seeds": request.row_seeds, "col_seeds": request.col_seeds}
        figure = RecordHead.of("/mix", model.name, model.version, format=fmt, image="grid", **mix, **whole)
        noise = "const" if request.noise == "const" else "random"
        return records, figure.record(noise=noise, noise_seed=request.noise_seed)

    def encoder(
        self, class_names: list[str], records: Records | None, grid_record: str | None
    ) -> Callable[[np.ndarray], list[StyleImage]]:
        """The grid's encode step: one StyleImage per source and cell (the cells have no seed or
        label of their own), then the figure's when the request asks for it."""
        cells = self.n_rows * self.n_cols
        return style_encoder(
            self.request.format,
            self.row_sources.seeds + self.col_sources.seeds + [None] * cells,
            self.row_sources.labels + self.col_sources.labels + [None] * cells,
            self.row_sources.noise_seeds + self.col_sources.noise_seeds + self.cell_noise,
            class_names,
            records,
            self.request.return_latents,
            grid=(self.n_rows, self.n_cols) if self.request.grid else None,
            grid_record=grid_record,
        )

    def split(
        self, images: list[StyleImage]
    ) -> tuple[list[StyleImage], list[StyleImage], list[list[StyleImage]]]:
        """The answer's images (the figure's taken off) -> (rows, columns, cells row by row)."""
        n_rows, n_cols = self.n_rows, self.n_cols
        first = n_rows + n_cols  # the first cell
        cells = [images[first + r * n_cols : first + (r + 1) * n_cols] for r in range(n_rows)]
        return images[:n_rows], images[n_rows:first], cells


def mixing_figure(pixels: np.ndarray, rows: int, cols: int, gap: int = 2) -> np.ndarray:
    """pixels (rows + cols + rows*cols, H, W, C): the row sources, the column sources, the cells ->
    one image of (rows + 1) x (cols + 1) cells: the column sources along the top, the row sources
    down the left, a blank corner, white gutters of `gap` pixels."""
    _, h, w, c = pixels.shape
    figure = np.full(((rows + 1) * (h + gap) - gap, (cols + 1) * (w + gap) - gap, c), 255, np.uint8)

    def put(r: int, col: int, image: np.ndarray) -> None:
        figure[r * (h + gap) : r * (h + gap) + h, col * (w + gap) : col * (w + gap) + w] = image

    for j in range(cols):
        put(0, j + 1, pixels[rows + j])
    for i in range(rows):
        put(i + 1, 0, pixels[i])
        for j in range(cols):
            put(i + 1, j + 1, pixels[rows + cols + i * cols + j])
    return figure


def decode_ws(encoded: list[str], style: StyleSpec, what: str) -> np.ndarray:
    """The client's ws: base64 .npy files, (w_dim,) or (num_ws, w_dim), finite -> (N, num_ws, w_dim)."""
    # a w in a request: (num_ws, w_dim) float64 at most, as base64
    max_chars = 4 * (style.num_ws * style.w_dim * 8 + NPY_HEADER_BYTES) // 3 + 4
    out = np.empty((len(encoded), style.num_ws, style.w_dim), dtype=np.float32)
    for i, text in enumerate(encoded):
        where = f"{what}[{i}]"
        if len(text) > max_chars:
            raise InvalidRequest(
                f"{where}: {len(text)} base64 characters, too big for a ({style.num_ws}, "
                f"{style.w_dim}) w (at most {max_chars})"
            )
        try:
            array = np.load(io.BytesIO(base64.b64decode(text, validate=True)), allow_pickle=False)
        except (binascii.Error, ValueError, OSError, EOFError) as e:
            raise InvalidRequest(f"{where}: not a base64 .npy file ({e})") from None
        try:
            out[i] = check_ws(np.asarray(array), style.num_ws, style.w_dim, where)
        except ValueError as e:
            raise InvalidRequest(str(e)) from None
    return out


def encode_w(ws: np.ndarray) -> bytes:
    """(num_ws, w_dim) float32 -> .npy bytes."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(ws, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def noise_mode(noise_seed: int | None) -> str:
    """A record's noise: random (from the noise seed) or const (zero noise)."""
    return "const" if noise_seed is None else "random"


def generate_fields(
    class_names: list[str], seed: int | None, label: int | None, noise_seed: int | None
) -> dict[str, Any]:
    """A /generate image's own record fields. A given w's image has no seed or label (its
    record's head says source: W_SOURCE)."""
    noise = {"noise": noise_mode(noise_seed), "noise_seed": noise_seed}
    if seed is None:
        return noise
    return {"seed": seed, "label": label, "label_name": class_name(class_names, label), **noise}


def style_encoder(
    fmt: str,
    seeds: list[int | None],
    labels: list[int | None],
    noise_seeds: list[int | None],
    class_names: list[str],
    records: Records | None,
    latents: bool = False,
    grid: tuple[int, int] | None = None,
    grid_record: str | None = None,
) -> Callable[[np.ndarray], list[StyleImage]]:
    """The encode step of a style job: rows -> one StyleImage per row (+ the grid's, last), row i's
    file carrying the record records[i] (a head and the row's own fields; None: npy, no records)."""

    def encode(rows: np.ndarray) -> list[StyleImage]:
        pixels = rows["image"]
        if records is None:
            blobs = [encode_image(image, fmt) for image in pixels]
        else:
            blobs = [
                encode_recorded(image, fmt, head.record(**own))
                for image, (head, own) in zip(pixels, records, strict=True)
            ]
        images = [
            StyleImage(
                seed=seed,
                label=label,
                label_name=None if label is None else class_names[label],
                noise_seed=noise_seed,
                data=blob,
                w=encode_w(row["ws"]) if latents else None,
            )
            for seed, label, noise_seed, row, blob in zip(
                seeds, labels, noise_seeds, rows, blobs, strict=True
            )
        ]
        if grid is not None:
            figure = mixing_figure(pixels, *grid)
            images.append(StyleImage(None, None, None, None, encode_recorded(figure, fmt, grid_record)))
        return images

    return encode
