"""Thin routers: parse, call the engine, shape the answer."""

from __future__ import annotations

import base64
import functools
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.responses import Response
from starlette.types import Receive

from service.api.deps import DeadlineDep, EngineDep, disconnect_watch
from service.api.schemas import ErrorBody, GenerateBody, GenerateResponse, WalkBody, WalkResponse
from service.encoding import FORMAT_OF_MEDIA_TYPE, MEDIA_TYPES
from service.engine import Engine, GenerateResult, GenerateSpec, WalkSpec
from service.errors import InvalidRequest, NotAcceptable
from service.imaging import MEDIA_TYPE_FORMATS, check_media_type
from service.metrics import CONTENT_TYPE

router = APIRouter()

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "invalid request (unknown label, bad seed, ...)",
        404: "unknown model",
        406: "a binary image was asked for with n > 1",
        413: "body too large",
        422: "the body does not match the schema",
        429: "queue full; see Retry-After",
        503: "not ready (starting or draining)",
        504: "the deadline cannot be met",
    }.items()
}


def _json(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(
        json.dumps(payload, separators=(",", ":")), status_code=status, media_type="application/json"
    )


def _binary_format(accept: str | None) -> str | None:
    """The image format the Accept header asks for as raw bytes, if it asks for one."""
    if not accept:
        return None
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in FORMAT_OF_MEDIA_TYPE:
            return FORMAT_OF_MEDIA_TYPE[media]
    return None


@router.post(
    "/generate",
    response_model=GenerateResponse,
    responses={
        **ERRORS,
        200: {
            "description": "JSON with base64 images; or, with Accept: image/png|image/jpeg|image/webp|"
            "application/x-npy and n=1, the image bytes (headers X-Seed, X-Label, X-Model-Version)",
            "content": {media: {} for media in MEDIA_TYPES.values()},
        },
    },
)
async def generate(
    body: GenerateBody,
    request: Request,
    engine: EngineDep,
    deadline: DeadlineDep,
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    # Served by service.api.hot_paths in the running service; declared here for the OpenAPI
    # document and for the FastAPI app used on its own.
    return await answer_generate(
        engine, body, accept, deadline, request.receive, request.scope.setdefault("state", {})
    )


async def answer_generate(
    engine: Engine,
    body: GenerateBody,
    accept: str | None,
    deadline: float,
    receive: Receive,
    state: dict[str, Any],
) -> Response:
    """The /generate answer once the request is parsed: JSON with base64 images, or one image's
    bytes when the Accept header asks for an image type and n is 1."""
    binary = _binary_format(accept)
    fmt = binary or body.format
    spec = GenerateSpec(
        model=body.model,
        n=body.n,
        seed=body.seed,
        seeds=body.seeds,
        labels=body.labels,
        truncation=body.truncation,
        fmt=fmt,
    )
    if binary and (spec.n or len(spec.seeds or [1])) != 1:
        raise NotAcceptable("a single image's bytes can be returned only for n=1; ask for JSON for more")
    async with disconnect_watch(receive) as cancel:
        result = await engine.generate(spec, deadline, cancel)
    state["model"], state["version"] = result.model, result.version
    if binary:
        image = result.images[0]
        headers = {"X-Seed": str(image.seed), "X-Model": result.model, "X-Model-Version": str(result.version)}
        if image.label is not None:
            headers["X-Label"] = str(image.label)
        return Response(image.data, media_type=MEDIA_TYPES[fmt], headers=headers)
    return Response(_generate_json(result), media_type="application/json")


def _generate_json(result: GenerateResult) -> bytes:
    """The JSON answer, assembled from pieces: the base64 strings need no escaping, and building
    one dict per image for json.dumps costs more than the images' encoding on a busy server."""
    head = _json_head(result.model, result.version, result.fmt, result.height, result.width, result.channels)
    images = b",".join(
        b'{"seed":%d,"label":%s,"label_name":%s,"data":"%s"}'
        % (image.seed, _json_value(image.label), _json_value(image.label_name), base64.b64encode(image.data))
        for image in result.images
    )
    return head + images + b"]}"


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


@router.post("/walk", response_model=WalkResponse, responses=ERRORS)
async def walk(body: WalkBody, request: Request, engine: EngineDep, deadline: DeadlineDep) -> Response:
    """A latent walk: `steps` images at even steps along the path between two seeds' latents
    (slerp or lerp), all with one label. The first image is from_seed's /generate image and the
    last is to_seed's (with the same label and truncation)."""
    spec = WalkSpec(
        from_seed=body.from_seed,
        to_seed=body.to_seed,
        steps=body.steps,
        model=body.model,
        label=body.label,
        truncation=body.truncation,
        method=body.method,
        fmt=body.format,
    )
    async with disconnect_watch(request.receive) as cancel:
        result = await engine.walk(spec, deadline, cancel)
    request.state.model, request.state.version = result.model, result.version
    head = {
        "model": result.model,
        "version": result.version,
        "format": result.fmt,
        "height": result.height,
        "width": result.width,
        "channels": result.channels,
        "from_seed": result.from_seed,
        "to_seed": result.to_seed,
        "method": result.method,
        "label": result.label,
        "label_name": result.label_name,
    }
    images = [
        {"t": t, "data": base64.b64encode(data).decode("ascii")}
        for t, data in zip(result.positions, result.images, strict=True)
    ]
    return _json({**head, "images": images})


UPSCALE_BODY = {
    "required": True,
    "content": {
        **{media: {"schema": {"type": "string", "format": "binary"}} for media in MEDIA_TYPE_FORMATS},
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
        },
    },
}


@router.post(
    "/upscale",
    openapi_extra={"requestBody": UPSCALE_BODY},
    responses={
        **ERRORS,
        415: {"model": ErrorBody, "description": "not a PNG, JPEG or WebP upload"},
        200: {
            "description": "the upscaled image (headers X-Input-Size, X-Output-Size as WIDTHxHEIGHT)",
            "content": {media: {} for media in MEDIA_TYPES.values()},
        },
    },
)
async def upscale(
    request: Request,
    engine: EngineDep,
    deadline: DeadlineDep,
    model: Annotated[
        str | None, Query(description="a served upscale model (default: the first by name)")
    ] = None,
    format: Annotated[
        Literal["png", "jpeg", "webp", "npy"] | None,
        Query(description="output format (default: the input's)"),
    ] = None,
) -> Response:
    """The image as the raw body (Content-Type image/png, image/jpeg or image/webp) or as the
    `file` field of a multipart form. Alpha is upscaled beside the colour; EXIF orientation is
    applied; grayscale stays grayscale. Large images run as overlapping tiles."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=8)
        upload = form.get("file")
        if not isinstance(upload, StarletteUploadFile):
            raise InvalidRequest("the multipart form needs the image in a field named 'file'")
        if upload.content_type not in (None, "", "application/octet-stream"):
            check_media_type(upload.content_type)
        data = await upload.read()
    else:
        check_media_type(content_type)
        data = await request.body()
    async with disconnect_watch(request.receive) as cancel:
        result = await engine.upscale(data, model, format, deadline, cancel)
    request.state.model, request.state.version = result.model, result.version
    headers = {
        "X-Model": result.model,
        "X-Model-Version": str(result.version),
        "X-Input-Size": "{}x{}".format(*result.input_size),
        "X-Output-Size": "{}x{}".format(*result.output_size),
    }
    return Response(result.data, media_type=MEDIA_TYPES[result.fmt], headers=headers)


@router.get("/v1/models")
async def list_models(engine: EngineDep) -> Response:
    """Manifests of the served models (with the execution provider each runs on), the models that
    failed to load with the reason, and this server's request limits."""
    return _json({"models": engine.model_infos(), "failed": engine.failures, "limits": engine.limits()})


@router.get("/healthz")
async def healthz() -> Response:
    """Alive: the process answers. Says nothing about the models (that is /readyz)."""
    return _json({"status": "ok"})


@router.get("/readyz", responses={503: {"description": "starting, draining, or a model failed to load"}})
async def readyz(engine: EngineDep) -> Response:
    """200 only when every model is loaded and warmed up; 503 while starting or draining."""
    ready, body = engine.readiness()
    return _json(body, 200 if ready else 503)


@router.get(
    "/metrics",
    responses={
        200: {
            "description": "Prometheus text format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
