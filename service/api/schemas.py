"""Request and response bodies as the OpenAPI document shows them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from model_export.latents import MAX_SEED, MIN_TRUNCATION


class GenerateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="a served generate model (default: the first by name)")
    n: int | None = Field(None, ge=1, description="number of images (default 1, or len(seeds))")
    seed: int | None = Field(
        None, ge=0, le=MAX_SEED, description="seed of the first image; image i gets seed+i"
    )
    seeds: list[int] | None = Field(None, min_length=1, description="one seed per image")
    labels: list[int | str] | int | str | None = Field(
        None, description="class index or name, one for all or one per image (default: seed mod classes)"
    )
    truncation: float | None = Field(
        None, ge=MIN_TRUNCATION, le=10.0, description="truncation trick threshold"
    )
    format: Literal["png", "jpeg", "webp", "npy"] = "png"


class WalkBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="a served generate model (default: the first by name)")
    from_seed: int = Field(ge=0, le=MAX_SEED, description="the walk's first image is this seed's image")
    to_seed: int = Field(ge=0, le=MAX_SEED, description="the walk's last image is this seed's image")
    steps: int = Field(8, ge=2, description="images along the walk, both ends included")
    label: int | str | None = Field(
        None, description="class index or name for every image (default: from_seed mod classes)"
    )
    truncation: float | None = Field(
        None, ge=MIN_TRUNCATION, le=10.0, description="truncation trick threshold, for both ends"
    )
    method: Literal["slerp", "lerp"] = Field(
        "slerp", description="slerp: along the great circle between the latents; lerp: the straight line"
    )
    format: Literal["png", "jpeg", "webp", "npy"] = "png"


class ImageOut(BaseModel):
    seed: int
    label: int | None
    label_name: str | None
    data: str = Field(description="the encoded image, base64")


class GeneratorAnswer(BaseModel):
    model: str
    version: int
    format: str
    height: int
    width: int
    channels: int


class GenerateResponse(GeneratorAnswer):
    images: list[ImageOut]


class WalkImageOut(BaseModel):
    t: float = Field(description="position along the walk: 0 is from_seed's image, 1 is to_seed's")
    data: str = Field(description="the encoded image, base64")


class WalkResponse(GeneratorAnswer):
    from_seed: int
    to_seed: int
    method: str
    label: int | None
    label_name: str | None
    images: list[WalkImageOut]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail
