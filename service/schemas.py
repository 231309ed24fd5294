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
from typing import Annotated, Literal

from pydantic import Base64Bytes, BaseModel, ConfigDict, Field, model_validator

from model_repository.latents import MAX_SEED, MIN_TRUNCATION

Format = Literal["png", "jpeg", "webp", "npy"]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Label = int | str  # a class index or a class name
Truncation = Annotated[float, Field(ge=MIN_TRUNCATION, le=10.0, description="truncation trick threshold")]
ModelName = Annotated[
    str | None, Field(description="a served model of the endpoint's task (default: the first by name)")
]


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelName = None
    n: int | None = Field(None, ge=1, description="number of images (default 1, or len(seeds))")
    seed: Seed | None = Field(None, description="seed of the first image; image i gets seed+i")
    seeds: list[Seed] | None = Field(None, min_length=1, description="one seed per image")
    labels: list[Label] | Label | None = Field(
        None, description="class index or name, one for all or one per image (default: seed mod classes)"
    )
    truncation: Truncation | None = None
    format: Format = "png"

    @model_validator(mode="after")
    def _seeds_agree(self) -> GenerateRequest:
        if self.seeds is not None:
            if self.seed is not None:
                raise ValueError("give either seed or seeds, not both")
            if self.n is not None and self.n != len(self.seeds):
                raise ValueError(f"n is {self.n} but {len(self.seeds)} seeds were given")
        elif self.seed is not None and self.n is not None and self.seed + self.n - 1 > MAX_SEED:
            raise ValueError(f"seed + n - 1 must be at most {MAX_SEED}")
        return self

    @property
    def count(self) -> int:
        """How many images the request asks for."""
        if self.seeds is not None:
            return len(self.seeds)
        return 1 if self.n is None else self.n


class WalkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelName = None
    from_seed: Seed = Field(description="the walk's first image is this seed's image")
    to_seed: Seed = Field(description="the walk's last image is this seed's image")
    steps: int = Field(8, ge=2, description="images along the walk, both ends included")
    label: Label | None = Field(
        None, description="class index or name for every image (default: from_seed mod classes)"
    )
    truncation: Truncation | None = None
    method: Literal["slerp", "lerp"] = Field(
        "slerp", description="slerp: along the great circle between the latents; lerp: the straight line"
    )
    format: Format = "png"


class UpscaleOptions(BaseModel):
    """The query parameters of /upscale (the image is the body)."""

    model_config = ConfigDict(extra="forbid")

    model: ModelName = None
    format: Format | None = Field(None, description="output format (default: the input's)")


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
    t: Annotated[float, Field(description="position along the walk: 0 is from_seed's image, 1 is to_seed's")]
    data: Annotated[Base64Bytes, Field(description="the encoded image (base64 in JSON)")]


@dataclass
class Walk(GeneratorAnswer):
    from_seed: int
    to_seed: int
    method: str
    label: int | None
    label_name: str | None
    images: list[WalkImage]


@dataclass
class Upscaled:
    model: str
    version: int
    format: str
    input_size: tuple[int, int]  # (width, height)
    output_size: tuple[int, int]
    data: bytes


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail
