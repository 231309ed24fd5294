"""POST /generate and POST /walk: a generator's images, as JSON with base64 files, or (one image,
asked for by Accept) as the image's own bytes; a walk also as one animated file."""

from __future__ import annotations

import base64
import functools
import json
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from contract.errors import InvalidRequest, NotAcceptable
from contract.media import (
    ANIMATION_MEDIA_TYPES,
    FORMAT_OF_MEDIA_TYPE,
    JSON,
    MEDIA_TYPES,
    negotiate,
    offers_for,
)
from service.api import stream
from service.api.lifetime import DEADLINE_HEADER, deadline_from_header, disconnect_watch
from service.api.responses import ERRORS, json_response
from service.api.route import ServiceRoute, header
from service.config import Settings
from service.lifecycle.registry import ModelRegistry
from service.schemas import (
    Generated,
    GenerateRequest,
    GeneratorAnswer,
    StyleGenerated,
    StyleImage,
    Walk,
    WalkAnimation,
    WalkRequest,
)
from service.served.generator import Generator
from service.served.style import StyleGenerator
from service.transport.door import Screen


def generator_for(registry: ModelRegistry, body: GenerateRequest) -> Generator:
    """The served generator that answers `body` (its first seed picks the canary's share)."""
    return registry.resolve(body.model, Generator, body.seed if body.seeds is None else body.seeds[0])


def walker_for(registry: ModelRegistry, body: WalkRequest) -> Generator:
    return registry.resolve(body.model, Generator, body.waypoints[0])


def screens(registry: ModelRegistry) -> dict[str, Screen]:
    """How the door (service.transport.door) reads these routes' requests: the JSON body names the model."""
    return {
        "/generate": Screen(
            lambda query, body: [generator_for(registry, GenerateRequest.model_validate_json(body))],
            needs_body=True,
        ),
        "/walk": Screen(
            lambda query, body: [walker_for(registry, WalkRequest.model_validate_json(body))], needs_body=True
        ),
    }


def router(registry: ModelRegistry, settings: Settings) -> APIRouter:
    api = APIRouter(route_class=ServiceRoute)
    default_deadline_ms = settings.default_deadline_ms

    async def _stream(request: Request, body: GenerateRequest, deadline: float) -> Response:
        """The answer as NDJSON, each image sent as its batch finishes (service.api.stream)."""
        model = generator_for(registry, body)
        model.check_count(body.count)  # the whole request's: each part checks only its own
        requests = stream.parts(body, model.batcher.max_units, settings.max_n)
        # the client watched until the stream begins; from then on the Stream sees it leave
        async with disconnect_watch(request.receive) as cancel:
            tasks = await stream.start_parts(
                lambda part, token: model.generate(part, body.format, deadline, token), requests, cancel
            )
        request.state.model, request.state.version = model.name, model.version
        head = {**model.answer_head(body.format), "n": body.count}
        if isinstance(model, StyleGenerator):
            head["truncation_psi"] = 1.0 if body.truncation_psi is None else body.truncation_psi
        lines = stream.generated_lines(head, requests, tasks, stream.image_fields)
        headers = {"X-Model": model.name, "X-Model-Version": str(model.version)}
        return stream.Stream(lines, lambda: stream.cancel_all(tasks, cancel), headers)

    @api.post(
        "/generate",
        response_model=Generated | StyleGenerated,
        responses={
            **ERRORS,
            200: {
                "description": "JSON with base64 images; or, with Accept: image/png|image/jpeg|image/webp|"
                "application/x-npy and n=1, the image bytes (headers X-Seed, X-Label, X-Noise-Seed, "
                "X-Model-Version). A style model answers StyleGenerated. With Accept: "
                "application/x-ndjson, a stream of JSON lines: the head (the answer's fields without "
                "images, and n), then one line per image (its index and its entry in the JSON answer) "
                "as its batch finishes, or a last line {error: {code, message}}.",
                "content": {
                    **{media: {} for media in MEDIA_TYPES.values()},
                    stream.NDJSON: {"schema": {"type": "string"}},
                },
            },
        },
        openapi_extra={"parameters": [DEADLINE_HEADER]},
    )
    async def generate(request: Request, body: GenerateRequest) -> Response:
        """n images from consecutive seeds (or the seeds given), with a label each when the
        model is conditional."""
        deadline = deadline_from_header(
            header(request.scope, b"x-deadline-ms"), default_ms=default_deadline_ms
        )
        accept = header(request.scope, b"accept")
        if _wants_stream(accept, body):
            return await _stream(request, body, deadline)
        binary = _binary_format(accept, body)
        if binary and body.return_latents:
            raise InvalidRequest("return_latents needs the JSON answer (Accept: application/json)")
        model = generator_for(registry, body)
        async with disconnect_watch(request.receive) as cancel:
            result = await model.generate(body, binary or body.format, deadline, cancel)
        request.state.model, request.state.version = result.model, result.version
        if binary:
            image = result.images[0]
            headers = {"X-Model": result.model, "X-Model-Version": str(result.version)}
            if image.seed is not None:
                headers["X-Seed"] = str(image.seed)
            if image.label is not None:
                headers["X-Label"] = str(image.label)
            if isinstance(image, StyleImage) and image.noise_seed is not None:
                headers["X-Noise-Seed"] = str(image.noise_seed)
            return Response(image.data, media_type=MEDIA_TYPES[result.format], headers=headers)
        if isinstance(result, StyleGenerated):
            return json_response(style_generated_json(result))
        return Response(generated_json(result), media_type=JSON)

    @api.post(
        "/walk",
        response_model=Walk,
        responses={
            **ERRORS,
            200: {
                "description": "JSON with base64 frames; or, with animation, one looping animated file "
                "of all the frames (image/webp, image/gif or image/apng) with the headers below.",
                "content": {media: {} for media in ANIMATION_MEDIA_TYPES.values()},
                "headers": ANIMATION_HEADERS,
            },
        },
        openapi_extra={"parameters": [DEADLINE_HEADER]},
    )
    async def walk(request: Request, body: WalkRequest) -> Response:
        """A latent walk: `steps` images at even steps along the path between two seeds' latents
        (slerp or lerp), all with one label. The first image is from_seed's /generate image and
        the last is to_seed's (with the same label and truncation). With `seeds`, a loop through
        them and back to the first, `steps` frames per segment. With `animation`, one animated
        file instead of JSON."""
        deadline = deadline_from_header(
            header(request.scope, b"x-deadline-ms"), default_ms=default_deadline_ms
        )
        if body.animation is not None:
            _accept_animation(header(request.scope, b"accept"), body.animation)
        model = walker_for(registry, body)
        async with disconnect_watch(request.receive) as cancel:
            result = await model.walk(body, deadline, cancel)
        request.state.model, request.state.version = result.model, result.version
        if isinstance(result, WalkAnimation):
            return Response(
                result.data,
                media_type=ANIMATION_MEDIA_TYPES[result.animation],
                headers=animation_headers(result),
            )
        return json_response(walk_json(result))

    return api


def _wants_stream(accept: str | None, body: GenerateRequest) -> bool:
    """Accept prefers NDJSON to JSON (and, for n=1, to the image itself); */* means JSON."""
    if not accept or stream.NDJSON not in accept.lower():
        return False
    offers = [JSON, *offers_for(body.format)] if body.count == 1 else [JSON]
    return negotiate(accept, [*offers, stream.NDJSON]) == stream.NDJSON


def _binary_format(accept: str | None, body: GenerateRequest) -> str | None:
    """The image format to answer with as raw bytes, when the Accept header prefers one to JSON
    (only a single image can be sent so); None for JSON. 406 when it accepts neither."""
    if not accept or accept == "*/*":
        return None
    images = offers_for(body.format)
    single = body.count == 1
    chosen = negotiate(accept, [JSON, *images] if single else [JSON])
    if chosen is None:
        if not single and negotiate(accept, images) is not None:
            raise NotAcceptable("a single image's bytes can be returned only for n=1; ask for JSON for more")
        offered = ", ".join([JSON, *images] if single else [JSON])
        raise NotAcceptable(
            f"the Accept header allows none of what this request can be answered with: {offered}"
        )
    return None if chosen == JSON else FORMAT_OF_MEDIA_TYPE[chosen]


ANIMATION_HEADERS = {
    name: {"description": text, "schema": {"type": "string"}}
    for name, text in {
        "X-Model": "the model that made the frames",
        "X-Model-Version": "its version",
        "X-Frames": "frames made (a file stores identical consecutive frames as one longer frame)",
        "X-Frame-Ms": "each frame's duration in the file, ms",
        "X-Seeds": "the seeds walked through, comma-separated: from_seed,to_seed or the loop's seeds",
        "X-Label": "the frames' label (conditional models)",
    }.items()
}


def _accept_animation(accept: str | None, animation: str) -> None:
    """406 when an Accept header is sent and excludes the animation's media type."""
    media = ANIMATION_MEDIA_TYPES[animation]
    if accept and negotiate(accept, [media]) is None:
        raise NotAcceptable(f"animation {animation} is answered as {media}, which the Accept header excludes")


def animation_headers(result: WalkAnimation) -> dict[str, str]:
    headers = {
        "X-Model": result.model,
        "X-Model-Version": str(result.version),
        "X-Frames": str(result.frames),
        "X-Frame-Ms": str(result.frame_ms),
        "X-Seeds": ",".join(map(str, result.seeds)),
    }
    if result.label is not None:
        headers["X-Label"] = str(result.label)
    return headers


def generated_json(result: Generated) -> bytes:
    """The /generate JSON answer, assembled from pieces: the base64 strings need no escaping, and
    building one dict per image for json.dumps costs more than the images' encoding on a busy
    server. Equal to the Generated schema's own serialization (a test holds it to that)."""
    head = _json_head(
        result.model, result.version, result.format, result.height, result.width, result.channels
    )
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
    """A style model's /generate answer (equal to the StyleGenerated schema's serialization)."""
    return {
        **head_fields(result),
        "truncation_psi": result.truncation_psi,
        "images": [style_image_json(image) for image in result.images],
    }


def head_fields(result: GeneratorAnswer) -> dict[str, Any]:
    return {
        "model": result.model,
        "version": result.version,
        "format": result.format,
        "height": result.height,
        "width": result.width,
        "channels": result.channels,
    }


@functools.lru_cache(maxsize=256)  # few distinct values: the served models and formats
def _json_head(model: str, version: int, fmt: str, height: int, width: int, channels: int) -> bytes:
    """The answer's fields before the images, up to the images list's opening bracket."""
    fields = {"model": model, "version": version, "format": fmt, "height": height, "width": width}
    head = json.dumps({**fields, "channels": channels}, separators=(",", ":")).encode()
    return head[:-1] + b',"images":['


@functools.cache
def _json_value(value: int | str | None) -> bytes:
    """A label or label name as JSON (few distinct values: the served models' classes)."""
    return json.dumps(value).encode()
