"""A served style-based generator (StyleGAN): /generate, /walk and /mix.

Every image is one batch row built from up to two sources, A and B, each a seed (mapped to w on
the lane, truncated toward its class's mean style) or a client's ws:

    ws = A's ws                                  a plain image (/generate)
    ws = (1 - t) A + t B  (or slerp)             a walk frame at t, in w (/walk)
    ws = A's ws in the row layers, B's elsewhere a mixing cell (/mix: A the row, B the column)

then the row's noise images (from its noise seed, or zeros) and the synthesis graph. The mapping
runs once per batch for every seeded source in it, so /generate, /walk and /mix requests share
batches and lanes, and an image's bytes never depend on the batch it ran in.

A batch answers a structured array: each row's pixels and the ws they were drawn from (returned
with return_latents).
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from contract.errors import InvalidRequest
from contract.provenance import W_SOURCE, RecordHead
from model_repository.latents import interpolate_latent, latents_from_seeds
from model_repository.manifest import MAPPING_FILE
from model_repository.styles import StyleSpec, check_ws
from service.images.encoding import encode_image
from service.images.stamping import encode_recorded
from service.schemas import (
    GenerateRequest,
    Label,
    Mixed,
    MixRequest,
    StyleGenerated,
    StyleImage,
    Walk,
    WalkAnimation,
    WalkRequest,
)
from service.served.batcher import CancelToken
from service.served.generator import Generator, class_name
from service.served.model import request

NPY_HEADER_BYTES = 1024  # room for an .npy header around a w's values


class StyleGenerator(Generator):
    kind_name = "style"
    graphs: ClassVar[dict[str, str]] = {"mapping": MAPPING_FILE}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.style = StyleSpec.from_manifest(self.manifest)
        mapping = self.manifest["generator"]["style"]["mapping"]
        self.conditional = any(i["name"] == "labels" for i in mapping["inputs"])
        out = self.output
        self.row_dtype = np.dtype(
            [
                ("image", np.uint8, (out["height"], out["width"], out["channels"])),
                ("ws", np.float32, (self.style.num_ws, self.style.w_dim)),
            ]
        )
        # a w in a request: (num_ws, w_dim) float64 at most, as base64
        self.max_w_chars = 4 * (self.style.num_ws * self.style.w_dim * 8 + NPY_HEADER_BYTES) // 3 + 4

    def accepts(self) -> dict[str, Any]:
        return {
            "endpoints": ["/generate", "/walk", "/mix"],
            "generate": [
                "seed",
                "seeds",
                "n",
                "labels",
                "truncation_psi",
                "noise_seed",
                "noise",
                "ws",
                "return_latents",
                "format",
            ],
            "walk": [
                "from_seed",
                "to_seed",
                "seeds",
                "steps",
                "label",
                "truncation_psi",
                "noise_seed",
                "noise",
                "method",
                "format",
                "animation",
                "frame_ms",
            ],
            "mix": [
                "row_seeds",
                "col_seeds",
                "row_ws",
                "col_ws",
                "crossover",
                "label",
                "truncation_psi",
                "noise_seed",
                "noise",
                "grid",
                "return_latents",
                "format",
            ],
            "num_ws": self.style.num_ws,
            "w_dim": self.style.w_dim,
            "layers": {g: list(r) for g, r in self.style.groups.items()},
        }

    # --- rows: the one place a style batch's input is built ----------------------------------------

    def style_rows(
        self,
        count: int,
        *,
        a_seed: np.ndarray | None = None,
        a_w: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        psi: float = 1.0,
        noise_seed: np.ndarray | None = None,
        b_seed: np.ndarray | None = None,
        b_w: np.ndarray | None = None,
        b_labels: np.ndarray | None = None,
        t: np.ndarray | None = None,
        slerp: bool = False,
        from_a: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """`count` rows; every request's rows have the same columns, so any share a batch.

        a_seed / b_seed (B,) int64 (-1: the source is a given w); a_w / b_w (B, num_ws, w_dim);
        labels / b_labels (B,) int64 (-1: none); noise_seed (B,) int64 (-1: zero noise); t (B,)
        where B is combined (walk: its position; mix: 1); from_a (num_ws,) or (B, num_ws) bool:
        the layers A keeps (default all: no B)."""
        shape = (count, self.style.num_ws, self.style.w_dim)
        none = np.full(count, -1, dtype=np.int64)
        has_b = b_seed is not None or b_w is not None
        keep = np.ones((count, self.style.num_ws), dtype=np.bool_)
        if from_a is not None:
            keep[:] = from_a
        return {
            "a_seed": none if a_seed is None else a_seed,
            "a_w": np.zeros(shape, np.float32) if a_w is None else a_w,
            "a_label": none if labels is None else labels,
            "b_seed": none if b_seed is None else b_seed,
            "b_w": np.zeros(shape, np.float32) if b_w is None else b_w,
            "b_label": none if b_labels is None else b_labels,
            "has_b": np.full(count, has_b),
            "t": np.zeros(count) if t is None else t,
            "slerp": np.full(count, slerp),
            "from_a": keep,
            "psi": np.full(count, psi, dtype=np.float32),
            "noise_seed": none if noise_seed is None else noise_seed,
        }

    def run_batch(self, rows: dict[str, np.ndarray]) -> np.ndarray:
        """On a lane: rows -> (B,) of (pixels (H, W, C) uint8, ws (num_ws, w_dim) float32)."""
        count = len(rows["a_seed"])
        ws_a, ws_b = rows["a_w"].copy(), rows["b_w"].copy()
        # 1. map every seeded source of the batch at once: z (S, latent) [+ labels] -> w (S, w_dim)
        a_mapped = rows["a_seed"] >= 0
        b_mapped = (rows["b_seed"] >= 0) & rows["has_b"]
        seeds = np.concatenate([rows["a_seed"][a_mapped], rows["b_seed"][b_mapped]])
        if len(seeds):
            labels = np.concatenate([rows["a_label"][a_mapped], rows["b_label"][b_mapped]])
            psi = np.concatenate([rows["psi"][a_mapped], rows["psi"][b_mapped]])
            feed = {"z": latents_from_seeds(seeds.tolist(), self.latent_size)}
            if self.conditional:
                feed["labels"] = labels
            w = self.style.truncate(
                self.runtime.run(feed, "mapping"), labels if self.conditional else None, psi
            )
            split = int(a_mapped.sum())
            ws_a[a_mapped] = w[:split, None, :]
            ws_b[b_mapped] = w[split:, None, :]
        # 2. combine the sources: a walk's point between them, or a mixing cell's layers
        ws = ws_a
        combined = np.flatnonzero(rows["has_b"])
        if len(combined):
            ws = ws_a.copy()
            for i in combined.tolist():
                a, b, t = ws_a[i], ws_b[i], float(rows["t"][i])
                method = "slerp" if rows["slerp"][i] else "lerp"
                between = interpolate_latent(a.ravel(), b.ravel(), t, method).reshape(a.shape)
                ws[i] = np.where(rows["from_a"][i][:, None], a, between)
        # 3. the noise images, then the synthesis
        noise = self.style.noise([s if s >= 0 else None for s in rows["noise_seed"].tolist()])
        pixels = self.runtime.run({"ws": ws, **dict(zip(self.style.noise_names, noise, strict=True))})
        out = np.empty(count, dtype=self.row_dtype)
        out["image"] = pixels
        out["ws"] = ws
        return out

    def warm_up_rows(self, units: int) -> dict[str, np.ndarray]:
        seeds = np.arange(units, dtype=np.int64)
        return self.style_rows(units, a_seed=seeds, labels=np.zeros(units, np.int64), noise_seed=seeds)

    # --- requests ---------------------------------------------------------------------------------

    @request
    async def generate(
        self, request: GenerateRequest, fmt: str, deadline: float, cancel: CancelToken
    ) -> StyleGenerated:
        """n images, from seeds or from the client's ws, encoded as `fmt`."""
        self._refuse_truncation(request)
        count = request.count
        self.check_count(count)
        psi = 1.0 if request.truncation_psi is None else request.truncation_psi
        if request.ws is not None:
            ws = self._decode_ws(request.ws, "ws")
            seeds: list[int | None] = [None] * count
            labels: list[int | None] = [None] * count
            if request.noise == "random" and request.noise_seed is None:
                raise InvalidRequest(
                    "a w has no seed to draw its noise from: give noise_seed, or noise const"
                )
            noise_seeds = self._noise_seeds(request.noise, request.noise_seed, [None] * count)
            self.admission.check_room(count)
            rows = self.style_rows(count, a_w=ws, noise_seed=_column(noise_seeds))
            head = self.record_head("/generate", fmt, source=W_SOURCE)
        else:
            seeded = self._seeds(request)
            seeds, labels = list(seeded), list(self._labels(request.labels, seeded))
            noise_seeds = self._noise_seeds(request.noise, request.noise_seed, seeded)
            self.admission.check_room(count)
            rows = self.style_rows(
                count,
                a_seed=np.array(seeded, dtype=np.int64),
                labels=_column(labels),
                psi=psi,
                noise_seed=_column(noise_seeds),
            )
            head = self.record_head("/generate", fmt, source="seed", truncation_psi=psi)
        records = None
        if head is not None:
            records = [
                (head, self._generate_fields(seed, label, noise_seed))
                for seed, label, noise_seed in zip(seeds, labels, noise_seeds, strict=True)
            ]
        images: list[StyleImage] = await self.batcher.submit(
            rows,
            deadline,
            cancel,
            _style_encoder(
                fmt, seeds, labels, noise_seeds, self.class_names, records, request.return_latents
            ),
        )
        self._images_generated.inc(len(images))
        return StyleGenerated(**self.answer_head(fmt), truncation_psi=psi, images=images)

    @staticmethod
    def pixels_of(output: np.ndarray) -> np.ndarray:
        return output["image"]

    @request
    async def walk(self, request: WalkRequest, deadline: float, cancel: CancelToken) -> Walk | WalkAnimation:
        """`steps` frames between two seeds' styles (or around a loop of seeds), in w (lerp by
        default, StyleGAN's convention), with one label and the noise images held fixed along the
        walk (the first seed's, by default)."""
        self._refuse_truncation(request)
        frames = self._walk_frames(request)
        count = frames.count
        label = self._labels(request.label, request.waypoints[:1])[0]
        method = request.method or "lerp"
        noise_seed = self._noise_seeds(request.noise, request.noise_seed, request.waypoints[:1])[0]
        self.admission.check_room(count)
        label_column = _column([label] * count)
        rows = self.style_rows(
            count,
            a_seed=frames.start,
            labels=label_column,
            psi=1.0 if request.truncation_psi is None else request.truncation_psi,
            noise_seed=_column([noise_seed] * count),
            b_seed=frames.end,
            b_labels=label_column,
            t=frames.t,
            slerp=method == "slerp",
            from_a=np.zeros(self.style.num_ws, dtype=np.bool_),
        )
        psi = 1.0 if request.truncation_psi is None else request.truncation_psi
        sampling = {"truncation_psi": psi, "noise": _noise(noise_seed), "noise_seed": noise_seed}
        return await self._walk_answer(request, rows, frames, method, label, sampling, deadline, cancel)

    @request
    async def mix(self, request: MixRequest, deadline: float, cancel: CancelToken) -> Mixed:
        """StyleGAN's style-mixing grid: each row source's and column source's own image, and every
        cell (the row's styles in the crossover's layers, the column's elsewhere; the column's
        noise), optionally composed into one figure."""
        count = request.count
        if count > self.settings.max_n:
            rows_n, cols_n = request.shape
            raise InvalidRequest(
                f"a {rows_n}x{cols_n} grid makes {count} images (sources and cells); this server's "
                f"limit is {self.settings.max_n}"
            )
        try:
            from_row = self.style.layers_from_row(request.crossover)
        except ValueError as e:
            raise InvalidRequest(f"crossover: {e}") from None
        psi = request.truncation_psi
        row = self._sources(request.row_seeds, request.row_ws, request.label, "row_ws")
        col = self._sources(request.col_seeds, request.col_ws, request.label, "col_ws")
        n_rows, n_cols = len(row[0]), len(col[0])
        # noise: the column source's (the cell's base image), or one noise_seed for all, or zeros
        row_noise = self._noise_seeds(request.noise, request.noise_seed, row[0], fixed=True)
        col_noise = self._noise_seeds(request.noise, request.noise_seed, col[0], fixed=True)
        cell_noise = col_noise * n_rows
        self.admission.check_room(count)
        # rows: the row sources, the column sources, then the cells row by row
        seeds = row[0] + col[0]
        source_rows = self.style_rows(
            n_rows + n_cols,
            a_seed=_column(seeds),
            a_w=np.concatenate([row[2], col[2]]),
            labels=_column(row[1] + col[1]),
            psi=psi,
            noise_seed=_column(row_noise + col_noise),
        )
        cells = n_rows * n_cols
        cell_rows = self.style_rows(
            cells,
            a_seed=_column([s for s in row[0] for _ in range(n_cols)]),
            a_w=np.repeat(row[2], n_cols, axis=0),
            labels=_column([label for label in row[1] for _ in range(n_cols)]),
            psi=psi,
            noise_seed=_column(cell_noise),
            b_seed=_column(col[0] * n_rows),
            b_w=np.tile(col[2], (n_rows, 1, 1)),
            b_labels=_column(col[1] * n_rows),
            t=np.ones(cells),
            from_a=from_row,
        )
        batch = {k: np.concatenate([source_rows[k], cell_rows[k]]) for k in source_rows}
        all_seeds = seeds + [None] * cells
        all_labels = row[1] + col[1] + [None] * cells
        records, grid_record = self._mix_records(request, row, col, row_noise + col_noise, cell_noise)
        encode = _style_encoder(
            request.format,
            all_seeds,
            all_labels,
            row_noise + col_noise + cell_noise,
            self.class_names,
            records,
            request.return_latents,
            grid=(n_rows, n_cols) if request.grid else None,
            grid_record=grid_record,
        )
        images: list[StyleImage] = await self.batcher.submit(batch, deadline, cancel, encode)
        grid = images.pop() if request.grid else None
        first = n_rows + n_cols  # the first cell
        self._images_generated.inc(count)
        return Mixed(
            **self.answer_head(request.format),
            crossover=request.crossover,
            layers_from_row=np.flatnonzero(from_row).tolist(),
            truncation_psi=psi,
            rows=images[:n_rows],
            columns=images[n_rows : n_rows + n_cols],
            cells=[images[first + r * n_cols : first + (r + 1) * n_cols] for r in range(n_rows)],
            grid=None if grid is None else grid.data,
        )

    # --- provenance records (contract.provenance) ---------------------------------------------------

    def _generate_fields(self, seed: int | None, label: int | None, noise_seed: int | None) -> dict[str, Any]:
        """A /generate image's own record fields. A given w's image has no seed or label (its
        record's head says source: W_SOURCE)."""
        noise = {"noise": _noise(noise_seed), "noise_seed": noise_seed}
        if seed is None:
            return noise
        return {"seed": seed, "label": label, "label_name": class_name(self.class_names, label), **noise}

    def _mix_records(
        self,
        request: MixRequest,
        row: tuple[list[int | None], list[int | None], np.ndarray],
        col: tuple[list[int | None], list[int | None], np.ndarray],
        source_noise: list[int | None],
        cell_noise: list[int | None],
    ) -> tuple[list[tuple[RecordHead, dict[str, Any]]] | None, str | None]:
        """A mixing grid's records (None for npy): each row and column source's is the /generate
        record of its image (it is that image); each cell's names its row and column seeds, the
        crossover and the noise; the grid's, the whole request."""
        fmt = request.format
        seeded = self.record_head("/generate", fmt, source="seed", truncation_psi=request.truncation_psi)
        given = self.record_head("/generate", fmt, source=W_SOURCE)
        if seeded is None or given is None:
            return None, None
        records = [
            (given if seed is None else seeded, self._generate_fields(seed, label, noise_seed))
            for seed, label, noise_seed in zip(row[0] + col[0], row[1] + col[1], source_noise, strict=True)
        ]
        label = None if request.label is None else self._labels(request.label, [0])[0]
        source = "seed" if request.row_ws is None and request.col_ws is None else W_SOURCE
        mix = {
            "source": source,
            "crossover": request.crossover,
            "label": label,
            "label_name": class_name(self.class_names, label),
            "truncation_psi": request.truncation_psi,
        }
        cell = RecordHead.of("/mix", self.name, self.version, format=fmt, image="cell", **mix)
        n_cols = len(col[0])
        for i, noise_seed in enumerate(cell_noise):
            own = {"row_seed": row[0][i // n_cols], "col_seed": col[0][i % n_cols]}
            records.append((cell, own | {"noise": _noise(noise_seed), "noise_seed": noise_seed}))
        grid = None
        if request.grid:
            whole = {"row_seeds": request.row_seeds, "col_seeds": request.col_seeds}
            grid = RecordHead.of(
                "/mix", self.name, self.version, format=fmt, image="grid", **mix, **whole
            ).record(noise="const" if request.noise == "const" else "random", noise_seed=request.noise_seed)
        return records, grid

    # --- decoding ----------------------------------------------------------------------------------

    def _refuse_truncation(self, request: GenerateRequest | WalkRequest) -> None:
        if request.truncation is not None:
            raise InvalidRequest(
                f"model {self.name!r} is style-based and does not take truncation: "
                "truncation_psi (0-1) truncates a style model"
            )

    def _sources(
        self, seeds: list[int] | None, ws: list[str] | None, label: Label | None, what: str
    ) -> tuple[list[int | None], list[int | None], np.ndarray]:
        """One side of a mixing grid: (seeds, labels, ws (S, num_ws, w_dim)); seeds and labels are
        None for given ws, whose ws are zeros for seeded sources."""
        if ws is not None:
            if label is not None:
                raise InvalidRequest(f"label applies to seeded sources; {what} already hold their styles")
            return [None] * len(ws), [None] * len(ws), self._decode_ws(ws, what)
        assert seeds is not None
        labels = self._labels(label, seeds)
        zeros = np.zeros((len(seeds), self.style.num_ws, self.style.w_dim), np.float32)
        return list(seeds), list(labels), zeros

    def _decode_ws(self, encoded: list[str], what: str) -> np.ndarray:
        """The client's ws: base64 .npy files, (w_dim,) or (num_ws, w_dim), finite -> (N, num_ws, w_dim)."""
        out = np.empty((len(encoded), self.style.num_ws, self.style.w_dim), dtype=np.float32)
        for i, text in enumerate(encoded):
            where = f"{what}[{i}]"
            if len(text) > self.max_w_chars:
                raise InvalidRequest(
                    f"{where}: {len(text)} base64 characters, too big for a ({self.style.num_ws}, "
                    f"{self.style.w_dim}) w (at most {self.max_w_chars})"
                )
            try:
                array = np.load(io.BytesIO(base64.b64decode(text, validate=True)), allow_pickle=False)
            except (binascii.Error, ValueError, OSError, EOFError) as e:
                raise InvalidRequest(f"{where}: not a base64 .npy file ({e})") from None
            try:
                out[i] = check_ws(np.asarray(array), self.style.num_ws, self.style.w_dim, where)
            except ValueError as e:
                raise InvalidRequest(str(e)) from None
        return out

    @staticmethod
    def _noise_seeds(
        noise: str | None, noise_seed: int | None, seeds: Sequence[int | None], fixed: bool = False
    ) -> list[int | None]:
        """Each image's noise seed (None: zero noise): noise_seed + i (the same for all when
        `fixed`), else the image's own seed; a given w without a noise seed has zero noise."""
        if noise == "const":
            return [None] * len(seeds)
        if noise_seed is not None:
            return [noise_seed if fixed else noise_seed + i for i in range(len(seeds))]
        return list(seeds)


def _noise(noise_seed: int | None) -> str:
    """A record's noise: random (from the noise seed) or const (zero noise)."""
    return "const" if noise_seed is None else "random"


def _column(values: list[int | None]) -> np.ndarray:
    return np.array([-1 if v is None else v for v in values], dtype=np.int64)


def encode_w(ws: np.ndarray) -> bytes:
    """(num_ws, w_dim) float32 -> .npy bytes."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(ws, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def _style_encoder(
    fmt: str,
    seeds: list[int | None],
    labels: list[int | None],
    noise_seeds: list[int | None],
    class_names: list[str],
    records: list[tuple[RecordHead, dict[str, Any]]] | None,
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
