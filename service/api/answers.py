"""Answers as HTTP responses: each kind (JSON, one image's bytes, an animation, an upscaled image,
a stream) made in one place, with the model headers of its call (service.api.call). The JSON of
the generators' answers is assembled here from the answer dataclasses (service.schemas.answers),
equal to their schemas' own serialization (tests/service/test_schemas.py holds that)."""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.responses import Response

from contract.media import ANIMATION_MEDIA_TYPES, JSON, MEDIA_TYPES
from service.api import stream
from service.api.call import Call
from service.schemas.answers import (
    Generated,
    GeneratorAnswer,
    Mixed,
    StyleGenerated,
    StyleImage,
    Upscaled,
    Walk,
    WalkAnimation,
)

HEAD = tuple(f.name for f in dataclasses.fields(GeneratorAnswer))  # every generator answer's head


def json_answer(call: Call, payload: dict[str, Any] | bytes) -> Response:
    content = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":"))
    return Response(content, media_type=JSON, headers=call.model_headers())


def image_answer(call: Call, data: bytes, fmt: str, facts: dict[str, str] | None = None) -> Response:
    """One image's bytes, with the model headers and `facts` (more headers: X-Seed, ...)."""
    headers = call.model_headers()
    if facts:
        headers.update(facts)
    return Response(data, media_type=MEDIA_TYPES[fmt], headers=headers)


def stream_answer(
    call: Call, lines: AsyncIterator[bytes], cleanup: Callable[[], Awaitable[None]]
) -> Response:
    return stream.Stream(lines, cleanup, call.model_headers())


def generated(call: Call, result: Generated | StyleGenerated) -> Response:
    if isinstance(result, StyleGenerated):
        return json_answer(call, style_generated_json(result))
    return json_answer(call, generated_json(result))


def animation(call: Call, result: WalkAnimation) -> Response:
    headers = {
        **call.model_headers(),
        "X-Frames": str(result.frames),
        "X-Frame-Ms": str(result.frame_ms),
        "X-Seeds": ",".join(map(str, result.seeds)),
    }
    if result.label is not None:
        headers["X-Label"] = str(result.label)
    return Response(result.data, media_type=ANIMATION_MEDIA_TYPES[result.animation], headers=headers)


def upscaled(call: Call, result: Upscaled) -> Response:
    return Response(result.data, media_type=MEDIA_TYPES[result.format], headers=upscale_headers(result))


def upscale_headers(result: Upscaled) -> dict[str, str]:
    """What the answer says about how it was made: the models, the blend, the resize (also the
    last line of a streamed /upscale)."""
    size = result.size
    headers = {
        "X-Model": result.model,
        "X-Model-Version": str(result.version),
        "X-Models": ", ".join(f"{name}@{version}" for name, version in result.models),
        "X-Input-Size": "{}x{}".format(*result.input_size),
        "X-Output-Size": "{}x{}".format(*result.output_size),
        "X-Resize": "none",
        "X-Bit-Depth": str(result.bit_depth),
    }
    if result.detail is not None:
        headers["X-Detail"] = f"{result.detail:g}"
    if result.metadata_dropped:
        headers["X-Metadata-Dropped"] = "; ".join(result.metadata_dropped)
    native = result.native_size
    if (size.resize_w, size.resize_h) != native:
        headers["X-Resize"] = f"lanczos {native[0]}x{native[1]} to {size.resize_w}x{size.resize_h}"
    if (size.resize_w, size.resize_h) != (size.width, size.height):
        headers["X-Crop"] = f"{size.width}x{size.height}+{size.left}+{size.top}"
    return headers


# --- the generators' JSON ----------------------------------------------------------------------


def head_fields(result: GeneratorAnswer) -> dict[str, Any]:
    return {name: getattr(result, name) for name in HEAD}


def generated_json(result: Generated) -> bytes:
    """The /generate JSON answer, assembled from pieces: the base64 strings need no escaping, and
    building one dict per image for json.dumps costs more than the images' encoding on a busy
    server."""
    head = _head_json(*(getattr(result, name) for name in HEAD))
    images = b",".join(
        b'{"seed":%d,"label":%s,"label_name":%s,"data":"%s"}'
        % (image.seed, _json_value(image.label), _json_value(image.label_name), base64.b64encode(image.data))
        for image in result.images
    )
    return head + images + b"]}"


def walk_json(result: Walk) -> dict[str, Any]:
    return {
        **head_fields(result),
        "from_seed": result.from_seed,
        "to_seed": result.to_seed,
        "seeds": result.seeds,
        "method": result.method,
        "label": result.label,
        "label_name": result.label_name,
        "images": [
            {"segment": image.segment, "t": image.t, "data": base64.b64encode(image.data).decode("ascii")}
            for image in result.images
        ],
    }


def style_image_json(image: StyleImage) -> dict[str, Any]:
    return {
        "seed": image.seed,
        "label": image.label,
        "label_name": image.label_name,
        "noise_seed": image.noise_seed,
        "data": base64.b64encode(image.data).decode("ascii"),
        "w": None if image.w is None else base64.b64encode(image.w).decode("ascii"),
    }


def style_generated_json(result: StyleGenerated) -> dict[str, Any]:
    return {
        **head_fields(result),
        "truncation_psi": result.truncation_psi,
        "images": [style_image_json(image) for image in result.images],
    }


def mixed_json(result: Mixed) -> dict[str, Any]:
    return {
        **head_fields(result),
        "crossover": result.crossover,
        "layers_from_row": result.layers_from_row,
        "truncation_psi": result.truncation_psi,
        "rows": [style_image_json(image) for image in result.rows],
        "columns": [style_image_json(image) for image in result.columns],
        "cells": [[style_image_json(image) for image in row] for row in result.cells],
        "grid": None if result.grid is None else base64.b64encode(result.grid).decode("ascii"),
    }


@functools.lru_cache(maxsize=256)  # few distinct values: the served models and formats
def _head_json(*values: Any) -> bytes:
    """The answer's head before the images, up to the images list's opening bracket."""
    head = json.dumps(dict(zip(HEAD, values, strict=True)), separators=(",", ":")).encode()
    return head[:-1] + b',"images":['


@functools.cache
def _json_value(value: int | str | None) -> bytes:
    """A label or label name as JSON (few distinct values: the served models' classes)."""
    return json.dumps(value).encode()
