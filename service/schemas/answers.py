"""What an answer holds: plain dataclasses, cheap to build per image on a busy server, whose
pydantic annotations give the OpenAPI document the same shape the JSON has (`data` is base64
there); and the error body every error answer has."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from pydantic import Base64Bytes, BaseModel, Field

if TYPE_CHECKING:
    from service.images.output_size import OutputSize


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
