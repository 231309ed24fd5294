"""What a request asks for: validated from the HTTP body, it goes as it is into the served model
that answers it. Every limit that depends on neither the server's settings nor the model lives in
these fields (max_n and a model's classes are checked by the served model). The fields, bounds
and choices are the contract's (contract.endpoints; tests/contract holds the two together).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model_repository.latents import MAX_SEED, MIN_TRUNCATION

Format = Literal["png", "jpeg", "webp", "npy"]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Label = int | str  # a class index or a class name
Truncation = Annotated[float, Field(ge=MIN_TRUNCATION, le=10.0, description="truncation trick threshold")]
ModelName = Annotated[
    str | None,
    Field(
        description="a served model of the endpoint's task: NAME (its default version) or NAME@VERSION "
        "(pinned); default: the first by name"
    ),
]


Psi = Annotated[
    float,
    Field(
        ge=0.0,
        le=1.0,
        description="style models: truncation toward the mean style, w = w_avg + psi (w - w_avg); "
        "1 = none, 0 = the label's mean image",
    ),
]
NoiseSeed = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_SEED,
        description="style models: seed of the per-layer noise images (image i gets noise_seed+i; "
        "default: each image's own seed)",
    ),
]
NoiseMode = Annotated[
    Literal["random", "const"],
    Field(description="style models: random noise images (from the noise seed) or const (zero noise)"),
]
EncodedW = Annotated[
    str,
    Field(
        description="a style w as a base64 .npy file: float (w_dim,) or (num_ws, w_dim), e.g. a "
        "`w` returned with return_latents",
    ),
]
ReturnLatents = Annotated[
    bool, Field(description="style models: each image's ws (num_ws, w_dim) float32 as base64 .npy")
]


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelName = None
    n: int | None = Field(None, ge=1, description="number of images (default 1, or len(seeds) or len(ws))")
    seed: Seed | None = Field(None, description="seed of the first image; image i gets seed+i")
    seeds: list[Seed] | None = Field(None, min_length=1, description="one seed per image")
    labels: list[Label] | Label | None = Field(
        None, description="class index or name, one for all or one per image (default: seed mod classes)"
    )
    truncation: Truncation | None = Field(
        None, description="non-style models: truncation trick threshold on z (latents redrawn beyond it)"
    )
    truncation_psi: Psi | None = None
    noise_seed: NoiseSeed | None = None
    noise: NoiseMode | None = None
    ws: list[EncodedW] | None = Field(
        None, min_length=1, description="style models: one w per image instead of seeds (no labels, no psi)"
    )
    return_latents: ReturnLatents = False
    format: Format = "png"

    @model_validator(mode="after")
    def _seeds_agree(self) -> GenerateRequest:
        if self.ws is not None:
            given = [f for f in ("seed", "seeds", "labels", "truncation_psi") if getattr(self, f) is not None]
            if given:
                raise ValueError(
                    f"ws replace seeds, and a w already holds its label and truncation: drop {given[0]}"
                )
            if self.n is not None and self.n != len(self.ws):
                raise ValueError(f"n is {self.n} but {len(self.ws)} ws were given")
        elif self.seeds is not None:
            if self.seed is not None:
                raise ValueError("give either seed or seeds, not both")
            if self.n is not None and self.n != len(self.seeds):
                raise ValueError(f"n is {self.n} but {len(self.seeds)} seeds were given")
        elif self.seed is not None and self.n is not None and self.seed + self.n - 1 > MAX_SEED:
            raise ValueError(f"seed + n - 1 must be at most {MAX_SEED}")
        _check_noise(self.noise, self.noise_seed, self.count)
        return self

    @property
    def count(self) -> int:
        """How many images the request asks for."""
        if self.ws is not None:
            return len(self.ws)
        if self.seeds is not None:
            return len(self.seeds)
        return 1 if self.n is None else self.n


def _check_noise(noise: str | None, noise_seed: int | None, count: int) -> None:
    if noise == "const" and noise_seed is not None:
        raise ValueError("noise const is zero noise: it takes no noise_seed")
    if noise_seed is not None and noise_seed + count - 1 > MAX_SEED:
        raise ValueError(f"noise_seed + n - 1 must be at most {MAX_SEED}")


class WalkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelName = None
    from_seed: Seed | None = Field(
        None, description="the walk's first image is this seed's image (with to_seed; or give seeds)"
    )
    to_seed: Seed | None = Field(None, description="the walk's last image is this seed's image")
    seeds: list[Seed] | None = Field(
        None,
        min_length=2,
        description="instead of from_seed and to_seed: a loop through these seeds' images and back to "
        "the first, `steps` frames from each seed to the next (the next one's own image starts its "
        "segment), so it plays seamlessly on repeat",
    )
    steps: int = Field(
        8, ge=2, description="images along the walk, both ends included; with seeds: images per segment"
    )
    label: Label | None = Field(
        None, description="class index or name for every image (default: the first seed's mod classes)"
    )
    truncation: Truncation | None = Field(None, description="non-style models: truncation threshold on z")
    truncation_psi: Psi | None = None
    noise_seed: NoiseSeed | None = Field(
        None, description="style models: the noise images of every frame (default: the first seed's)"
    )
    noise: NoiseMode | None = None
    method: Literal["slerp", "lerp"] | None = Field(
        None,
        description="slerp: along the great circle between the latents; lerp: the straight line "
        "(default: slerp in z; a style model walks in w, lerp by default, as StyleGAN does)",
    )
    format: Format = Field("png", description="each frame's file format in the JSON answer")
    animation: Literal["webp", "gif", "apng"] | None = Field(
        None,
        description="answer with one looping animated file of all the frames (image/webp lossless, "
        "image/gif, image/apng) instead of JSON; not `format`, which names each frame's file in the "
        "JSON answer",
    )
    frame_ms: int = Field(
        100, ge=20, le=10000, description="with animation: each frame's duration, ms (GIF: to 10 ms)"
    )

    @model_validator(mode="after")
    def _path_and_answer_agree(self) -> WalkRequest:
        ends = [name for name in ("from_seed", "to_seed") if getattr(self, name) is not None]
        if self.seeds is not None and ends:
            raise ValueError(f"give either seeds (a loop) or from_seed and to_seed, not both: drop {ends[0]}")
        if self.seeds is None and len(ends) < 2:
            missing = " and ".join(n for n in ("from_seed", "to_seed") if n not in ends)
            raise ValueError(
                f"{missing} missing: a walk goes from from_seed to to_seed, or loops through seeds"
            )
        if self.animation is None and "frame_ms" in self.model_fields_set:
            raise ValueError("frame_ms is an animation's frame duration: give animation too")
        if self.animation is not None and self.format != "png":
            raise ValueError(
                "format names each frame's file in the JSON answer; an animation is one file of its own "
                "format: drop format"
            )
        _check_noise(self.noise, self.noise_seed, 1)
        return self

    @property
    def waypoints(self) -> list[int]:
        """The seeds the walk goes through, in order: [from_seed, to_seed], or a loop's seeds (the
        last goes back to the first)."""
        if self.seeds is not None:
            return list(self.seeds)
        assert self.from_seed is not None and self.to_seed is not None
        return [self.from_seed, self.to_seed]

    @property
    def count(self) -> int:
        """How many frames the walk makes."""
        return self.steps if self.seeds is None else self.steps * len(self.seeds)


Crossover = Annotated[
    Literal["coarse", "middle", "fine"] | Annotated[int, Field(ge=0)],
    Field(
        description="which layers' styles each cell takes from its row source: a group (coarse, "
        "middle, fine: that group from the row, the rest from the column) or a layer index k "
        "(layers 0..k-1 from the row; 0 gives the column's image, num_ws the row's)"
    ),
]


class MixRequest(BaseModel):
    """POST /mix: StyleGAN's style-mixing grid. Sources are seeds or ws (rows and columns each)."""

    model_config = ConfigDict(extra="forbid")

    model: ModelName = None
    row_seeds: list[Seed] | None = Field(None, min_length=1, description="the row sources")
    col_seeds: list[Seed] | None = Field(None, min_length=1, description="the column sources")
    row_ws: list[EncodedW] | None = Field(
        None, min_length=1, description="row sources as ws, instead of seeds"
    )
    col_ws: list[EncodedW] | None = Field(None, min_length=1, description="column sources as ws")
    crossover: Crossover = "coarse"
    label: Label | None = Field(
        None, description="class index or name of every seeded source (default: each seed mod classes)"
    )
    truncation_psi: Psi = 1.0
    noise_seed: NoiseSeed | None = Field(
        None, description="the noise images of every image (default: each column source's seed)"
    )
    noise: NoiseMode | None = None
    grid: bool = Field(False, description="also return the whole grid as one image")
    return_latents: ReturnLatents = False
    format: Format = "png"

    @model_validator(mode="after")
    def _sources(self) -> MixRequest:
        for side in ("row", "col"):
            seeds, ws = getattr(self, f"{side}_seeds"), getattr(self, f"{side}_ws")
            if (seeds is None) == (ws is None):
                raise ValueError(f"give either {side}_seeds or {side}_ws")
        _check_noise(self.noise, self.noise_seed, 1)
        return self

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns)."""
        rows = self.row_seeds if self.row_seeds is not None else self.row_ws
        cols = self.col_seeds if self.col_seeds is not None else self.col_ws
        assert rows is not None and cols is not None
        return len(rows), len(cols)

    @property
    def count(self) -> int:
        """Images made: each source's own and every cell."""
        rows, cols = self.shape
        return rows + cols + rows * cols


class UpscaleOptions(BaseModel):
    """The query parameters of /upscale (the image is the body)."""

    model_config = ConfigDict(extra="forbid")

    model: ModelName = None
    format: Format | None = Field(None, description="output format (default: the input's)")
    scale: float | None = Field(
        None,
        ge=1.0,
        le=64.0,
        description="one factor for both axes, 1 to the largest served model's (e.g. 2.5 or 3); the "
        "server picks the model and resizes (default: the model's own factor)",
    )
    width: int | None = Field(None, ge=1, le=65536, description="output width (with height: see fit)")
    height: int | None = Field(None, ge=1, le=65536, description="output height (with width: see fit)")
    fit: Literal["contain", "cover", "exact"] | None = Field(
        None,
        description="with width and height: contain (largest size inside them, aspect kept; the "
        "default), cover (fills them, aspect kept, centre-cropped), exact (stretched to them)",
    )
    detail: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="0 to 1: blend of a family's faithful model (0: SRResNet, smooth) and its detail "
        "model (1: SRGAN, sharper, invented texture)",
    )
    detail_model: str | None = Field(
        None,
        description="with model and detail: the family's other model, NAME or NAME@VERSION (default: "
        "its default version), so that a batch job keeps both versions",
    )
    strip: Literal["all", "gps", "none"] = Field(
        "gps",
        description="metadata dropped from the answer: gps (the EXIF GPS block and XMP's GPS "
        "properties), all (EXIF, XMP and resolution; the ICC profile stays), none",
    )
