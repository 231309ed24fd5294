"""A served style-based generator (StyleGAN): /generate, /walk and /mix.

Every image is one batch row from up to two sources, A and B, each a seed (mapped to w on the
lane, truncated toward its class's mean style) or a client's ws: a plain image is A's ws; a walk
frame at t is (1 - t) A + t B (or slerp), in w; a mixing cell is A's ws in the row layers and B's
elsewhere (the grid: service.served.style_mix). Then the row's noise images (from its noise seed,
or zeros) and the synthesis graph. The mapping runs once per batch for every seeded source in it,
so /generate, /walk and /mix share batches and lanes, and an image's bytes never depend on the
batch it ran in. A batch answers each row's pixels and the ws they were drawn from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from contract.endpoints import GENERATE, MIX, STYLE, WALK
from contract.errors import InvalidRequest
from contract.provenance import W_SOURCE
from model_repository.latents import interpolate_latent, latents_from_seeds
from model_repository.manifest import MAPPING_FILE
from model_repository.styles import StyleSpec
from service.schemas.answers import Mixed, StyleGenerated, StyleImage, Walk, WalkAnimation
from service.schemas.requests import GenerateRequest, MixRequest, WalkRequest
from service.served.batcher import CancelToken
from service.served.generator import Generator, int_column
from service.served.model import holds_model
from service.served.style_mix import (
    MixGrid,
    MixSide,
    decode_ws,
    generate_fields,
    noise_mode,
    style_encoder,
)


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

    def accepts(self) -> dict[str, Any]:
        return {
            "endpoints": ["/generate", "/walk", "/mix"],
            "generate": GENERATE.accepts(STYLE),
            "walk": WALK.accepts(STYLE),
            "mix": MIX.accepts(STYLE),
            "num_ws": self.style.num_ws,
            "w_dim": self.style.w_dim,
            "layers": {g: list(r) for g, r in self.style.groups.items()},
        }

    # --- the one place a style batch's inputs are built ---------------------------------------------

    def style_inputs(
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
        """The inputs of `count` images, one row each: every request's inputs have the same
        columns, so any requests share a batch.

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

    def run_batch(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """On a lane: inputs -> (B,) of (pixels (H, W, C) uint8, ws (num_ws, w_dim) float32)."""
        count = len(inputs["a_seed"])
        ws_a, ws_b = inputs["a_w"].copy(), inputs["b_w"].copy()
        # 1. map every seeded source of the batch at once: z (S, latent) [+ labels] -> w (S, w_dim)
        a_mapped = inputs["a_seed"] >= 0
        b_mapped = (inputs["b_seed"] >= 0) & inputs["has_b"]
        seeds = np.concatenate([inputs["a_seed"][a_mapped], inputs["b_seed"][b_mapped]])
        if len(seeds):
            labels = np.concatenate([inputs["a_label"][a_mapped], inputs["b_label"][b_mapped]])
            psi = np.concatenate([inputs["psi"][a_mapped], inputs["psi"][b_mapped]])
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
        combined = np.flatnonzero(inputs["has_b"])
        if len(combined):
            ws = ws_a.copy()
            for i in combined.tolist():
                a, b, t = ws_a[i], ws_b[i], float(inputs["t"][i])
                method = "slerp" if inputs["slerp"][i] else "lerp"
                between = interpolate_latent(a.ravel(), b.ravel(), t, method).reshape(a.shape)
                ws[i] = np.where(inputs["from_a"][i][:, None], a, between)
        # 3. the noise images, then the synthesis
        noise = self.style.noise([s if s >= 0 else None for s in inputs["noise_seed"].tolist()])
        pixels = self.runtime.run({"ws": ws, **dict(zip(self.style.noise_names, noise, strict=True))})
        out = np.empty(count, dtype=self.row_dtype)
        out["image"] = pixels
        out["ws"] = ws
        return out

    def warm_up_inputs(self, units: int) -> dict[str, np.ndarray]:
        seeds = np.arange(units, dtype=np.int64)
        return self.style_inputs(units, a_seed=seeds, labels=np.zeros(units, np.int64), noise_seed=seeds)

    # --- requests ---------------------------------------------------------------------------------

    @holds_model
    async def generate(
        self, request: GenerateRequest, fmt: str, deadline: float, cancel: CancelToken
    ) -> StyleGenerated:
        """n images, from seeds or from the client's ws, encoded as `fmt`."""
        self._refuse_truncation(request)
        count = request.count
        self.check_count(count)
        psi = 1.0 if request.truncation_psi is None else request.truncation_psi
        if request.ws is not None:
            ws = decode_ws(request.ws, self.style, "ws")
            seeds: list[int | None] = [None] * count
            labels: list[int | None] = [None] * count
            if request.noise == "random" and request.noise_seed is None:
                raise InvalidRequest(
                    "a w has no seed to draw its noise from: give noise_seed, or noise const"
                )
            noise_seeds = self._noise_seeds(request.noise, request.noise_seed, [None] * count)
            self.admission.check_room(count)
            inputs = self.style_inputs(count, a_w=ws, noise_seed=int_column(noise_seeds))
            head = self.record_head("/generate", fmt, source=W_SOURCE)
        else:
            seeded = self._seeds(request)
            seeds, labels = list(seeded), list(self._labels(request.labels, seeded))
            noise_seeds = self._noise_seeds(request.noise, request.noise_seed, seeded)
            self.admission.check_room(count)
            inputs = self.style_inputs(
                count,
                a_seed=np.array(seeded, dtype=np.int64),
                labels=int_column(labels),
                psi=psi,
                noise_seed=int_column(noise_seeds),
            )
            head = self.record_head("/generate", fmt, source="seed", truncation_psi=psi)
        records = None
        if head is not None:
            records = [
                (head, generate_fields(self.class_names, seed, label, noise_seed))
                for seed, label, noise_seed in zip(seeds, labels, noise_seeds, strict=True)
            ]
        images: list[StyleImage] = await self.batcher.submit(
            inputs,
            deadline,
            cancel,
            style_encoder(fmt, seeds, labels, noise_seeds, self.class_names, records, request.return_latents),
        )
        self._images_generated.inc(len(images))
        return StyleGenerated(**self.answer_head(fmt), truncation_psi=psi, images=images)

    @staticmethod
    def pixels_of(output: np.ndarray) -> np.ndarray:
        return output["image"]

    @holds_model
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
        label_column = int_column([label] * count)
        psi = 1.0 if request.truncation_psi is None else request.truncation_psi
        inputs = self.style_inputs(
            count,
            a_seed=frames.start,
            labels=label_column,
            psi=psi,
            noise_seed=int_column([noise_seed] * count),
            b_seed=frames.end,
            b_labels=label_column,
            t=frames.t,
            slerp=method == "slerp",
            from_a=np.zeros(self.style.num_ws, dtype=np.bool_),
        )
        sampling = {"truncation_psi": psi, "noise": noise_mode(noise_seed), "noise_seed": noise_seed}
        return await self._walk_answer(request, inputs, frames, method, label, sampling, deadline, cancel)

    @holds_model
    async def mix(self, request: MixRequest, deadline: float, cancel: CancelToken) -> Mixed:
        """StyleGAN's style-mixing grid: each row source's and column source's own image, and every
        cell (the row's styles in the crossover's layers, the column's elsewhere; the column's
        noise), optionally composed into one figure (service.served.style_mix)."""
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
        row_sources = self._mix_side(request, request.row_seeds, request.row_ws, "row_ws")
        col_sources = self._mix_side(request, request.col_seeds, request.col_ws, "col_ws")
        grid = MixGrid(request, row_sources, col_sources, from_row)
        self.admission.check_room(count)
        label = None if request.label is None else self._labels(request.label, [0])[0]
        encode = grid.encoder(self.class_names, *grid.records(self, label))
        images: list[StyleImage] = await self.batcher.submit(
            grid.inputs(self.style_inputs), deadline, cancel, encode
        )
        figure = images.pop() if request.grid else None
        row_images, column_images, cells = grid.split(images)
        self._images_generated.inc(count)
        return Mixed(
            **self.answer_head(request.format),
            crossover=request.crossover,
            layers_from_row=np.flatnonzero(from_row).tolist(),
            truncation_psi=request.truncation_psi,
            rows=row_images,
            columns=column_images,
            cells=cells,
            grid=None if figure is None else figure.data,
        )

    # --- decoding ----------------------------------------------------------------------------------

    def _refuse_truncation(self, request: GenerateRequest | WalkRequest) -> None:
        if request.truncation is not None:
            raise InvalidRequest(
                f"model {self.name!r} is style-based and does not take truncation: "
                "truncation_psi (0-1) truncates a style model"
            )

    def _mix_side(
        self, request: MixRequest, seeds: list[int] | None, ws: list[str] | None, what: str
    ) -> MixSide:
        """One side of a mixing grid, from its seeds or its ws; the noise: each source's own seed,
        one noise_seed for all, or zeros."""
        if ws is not None:
            if request.label is not None:
                raise InvalidRequest(f"label applies to seeded sources; {what} already hold their styles")
            given: list[int | None] = [None] * len(ws)
            noise_seeds = self._noise_seeds(request.noise, request.noise_seed, given, fixed=True)
            return MixSide(given, list(given), decode_ws(ws, self.style, what), noise_seeds)
        assert seeds is not None
        zeros = np.zeros((len(seeds), self.style.num_ws, self.style.w_dim), np.float32)
        noise_seeds = self._noise_seeds(request.noise, request.noise_seed, seeds, fixed=True)
        return MixSide(list(seeds), self._labels(request.label, seeds), zeros, noise_seeds)

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
