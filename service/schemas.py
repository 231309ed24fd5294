"""What a request asks for and what its answer holds: each described once, here.

The request models are validated from the HTTP body and go as they are into the served model that
answers them; every limit that does not depend on the server's settings or on the model lives in
these fields (the server's own limits, such as max_n, and the model's, such as its classes, are
checked by the served model). The answers are plain dataclasses, cheap to build per image on a
busy server; their pydantic annotations give the OpenAPI document the same shape the JSON has
(`data` is base64 there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Base64Bytes, BaseModel, ConfigDict, Field, model_validator

from model_repository.latents import MAX_SEED, MIN_TRUNCATION

if TYPE_CHECKING:
    from service.images.output_size import OutputSize

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
# Request fields only a style generator takes: any other model answers 400 naming them.
STYLE_FIELDS = ("truncation_psi", "noise_seed", "noise", "return_latents", "ws")


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


# --- answers ---------------------------------------------------------------------------------


@dataclass
class GeneratedImage:
    seed: int
    label: int | None
    label_name: str | None
    data: Annotated[Base64Bytes, Field(description="the encoded image (base64 in JSON)")]


@dataclass
class GeneratorAnswer:
    """What every generator answer says about its images."""

    model: str
    version: int
    format: str
    height: int
    width: int
    channels: int


@dataclass
class Generated(GeneratorAnswer):
    images: list[GeneratedImage]


@dataclass
class WalkImage:
    segment: Annotated[
        int, Field(description="the image's segment: k goes from seeds[k] to the next (0 without seeds)")
    ]
    t: Annotated[
        float,
        Field(description="position along its segment: 0 is the segment's first seed's image, 1 the next's"),
    ]
    data: Annotated[Base64Bytes, Field(description="the encoded image (base64 in JSON)")]


@dataclass
class Walk(GeneratorAnswer):
    from_seed: Annotated[int, Field(description="the first image's seed (a loop's first seed)")]
    to_seed: Annotated[int, Field(description="the last seed walked to (a loop's first seed: it closes)")]
    seeds: Annotated[
        list[int], Field(description="the seeds walked through: [from_seed, to_seed], or the loop's")
    ]
    method: str
    label: int | None
    label_name: str | None
    images: list[WalkImage]


@dataclass
class WalkAnimation:
    """A walk answered as one animated file (its bytes, with the rest in headers; not JSON)."""

    model: str
    version: int
    animation: str  # webp, gif or apng
    frames: int  # frames made (a file stores identical consecutive ones as one)
    frame_ms: int  # each frame's duration in the file
    seeds: list[int]  # the seeds walked through
    label: int | None
    data: bytes


@dataclass
class StyleImage:
    seed: int | None  # None: made from a given w
    label: int | None
    label_name: str | None
    noise_seed: int | None  # None: zero noise
    data: Annotated[Base64Bytes, Field(description="the encoded image (base64 in JSON)")]
    w: Annotated[
        Base64Bytes | None,
        Field(description="with return_latents: the image's ws, (num_ws, w_dim) float32 .npy (base64)"),
    ] = None


@dataclass
class StyleGenerated(GeneratorAnswer):
    truncation_psi: float
    images: list[StyleImage]


@dataclass
class Mixed(GeneratorAnswer):
    crossover: str | int
    layers_from_row: list[int]  # the ws indices each cell takes from its row source
    truncation_psi: float
    rows: list[StyleImage]
    columns: list[StyleImage]
    cells: Annotated[list[list[StyleImage]], Field(description="cells[r][c]: row r's styles in column c")]
    grid: Annotated[
        Base64Bytes | None,
        Field(
            description="with grid: the whole figure as one image (sources on the top row and left column)"
        ),
    ] = None


@dataclass
class Upscaled:
    model: str  # the model whose factor the path starts from (a blend's faithful model)
    version: int
    format: str
    input_size: tuple[int, int]  # (width, height), upright
    data: bytes
    models: list[tuple[str, int]]  # every model run: (name, version)
    detail: float | None  # the blend's weight of the detail model, when detail was asked for
    native_size: tuple[int, int]  # (width, height) the model made, before any resize
    size: OutputSize  # how the output was made from native_size
    bit_depth: int  # 16: a 16-bit PNG answered as one
    metadata_dropped: list[str]  # the input's metadata the answer could not carry, and why

    @property
    def output_size(self) -> tuple[int, int]:
        """(width, height) of the answer."""
        return self.size.width, self.size.height


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail
