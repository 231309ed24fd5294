"""POST /upscale: an image (raw body or a multipart form's `file`) upscaled by a super-resolution model."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from starlette.datastructures import QueryParams, UploadFile
from starlette.requests import Request
from starlette.responses import Response

from contract.errors import InvalidRequest, UnsupportedMediaType
from contract.media import MEDIA_TYPES, UPLOAD_MEDIA_TYPES, media_type, negotiate
from service.api import stream
from service.api.lifetime import DEADLINE_HEADER, deadline_from_header, disconnect_watch
from service.api.responses import ERRORS
from service.api.route import ServiceRoute, header
from service.config import Settings
from service.images.imaging import OpenedImage, open_image
from service.lifecycle.registry import ModelRegistry
from service.lifecycle.upscale_path import UpscalePath, candidates, choose_path
from service.schemas import ErrorBody, Upscaled, UpscaleOptions
from service.served.upscaler import Upscaler
from service.transport.door import Screen

BODY = {
    "required": True,
    "content": {
        **{media: {"schema": {"type": "string", "format": "binary"}} for media in UPLOAD_MEDIA_TYPES},
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
        },
    },
}


def query_parameters(model: type[UpscaleOptions]) -> list[dict[str, Any]]:
    """The OpenAPI query parameters of a model of query options, from its own JSON schema."""
    schema = model.model_json_schema()
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": field.get("description", ""),
            "schema": {k: v for k, v in field.items() if k != "description"},
        }
        for name, field in schema["properties"].items()
    ]


def screens(registry: ModelRegistry) -> dict[str, Screen]:
    """How the door (service.transport.door) reads this route's requests: the query names the upscaler, so
    an upload is refused before its body is read."""

    def upscalers(query: bytes, body: bytes) -> list[Upscaler]:
        return candidates(registry, UpscaleOptions.model_validate(dict(QueryParams(query))))

    return {"/upscale": Screen(upscalers, needs_body=False)}


def router(registry: ModelRegistry, settings: Settings) -> APIRouter:
    api = APIRouter(route_class=ServiceRoute)
    default_deadline_ms = settings.default_deadline_ms

    @api.post(
        "/upscale",
        openapi_extra={
            "requestBody": BODY,
            "parameters": [*query_parameters(UpscaleOptions), DEADLINE_HEADER],
        },
        responses={
            **ERRORS,
            415: {"model": ErrorBody, "description": "not a PNG, JPEG or WebP upload"},
            200: {
                "description": "the upscaled image. Headers: X-Input-Size, X-Output-Size (WIDTHxHEIGHT); "
                "X-Models (every model run, NAME@VERSION); X-Detail (the detail model's weight, when "
                "detail was asked for); X-Resize (none, or the resize after the model); X-Crop (fit cover)",
                "content": {
                    **{media: {} for media in MEDIA_TYPES.values()},
                    stream.NDJSON: {
                        "schema": {"type": "string"},
                        "description": "with Accept: application/x-ndjson: {tiles_done, tiles} lines "
                        "as rows of tiles finish, then {done, media_type, headers, data (base64)}",
                    },
                },
            },
        },
    )
    async def upscale(request: Request) -> Response:
        """The image as the raw body (Content-Type image/png, image/jpeg or image/webp) or as the
        `file` field of a multipart form. Alpha is upscaled beside the colour; EXIF orientation is
        applied; grayscale stays grayscale. Large images run as overlapping tiles. Any output size:
        `scale`, or `width`/`height` with `fit`; the server picks the model and resizes after it.
        `detail` blends a family's faithful and detail models."""
        options = UpscaleOptions.model_validate(dict(request.query_params))
        deadline = deadline_from_header(
            header(request.scope, b"x-deadline-ms"), default_ms=default_deadline_ms
        )
        content_type = request.headers.get("content-type", "")
        if media_type(content_type) == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=8)
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise InvalidRequest("the multipart form needs the image in a field named 'file'")
            if upload.content_type not in (None, "", "application/octet-stream"):
                _check_upload_type(upload.content_type)
            data = await upload.read()
        else:
            _check_upload_type(content_type)
            data = await request.body()
        opened = open_image(data, settings.max_input_pixels)  # the header only
        # Resolved once the upload is in: a model replaced while a slow upload arrives is not
        # held for it, and the request counts as the model's from here on.
        path = choose_path(registry, options, opened.width, opened.height)
        if _wants_progress(header(request.scope, b"accept")):
            return await _progress(request, opened, path, options, deadline)
        async with disconnect_watch(request.receive) as cancel:
            result = await path.model.upscale(opened, path, options, deadline, cancel)
        request.state.model, request.state.version = result.model, result.version
        return Response(result.data, media_type=MEDIA_TYPES[result.format], headers=upscale_headers(result))

    async def _progress(
        request: Request, opened: OpenedImage, path: UpscalePath, options: UpscaleOptions, deadline: float
    ) -> Response:
        """NDJSON: a line as each row of tiles finishes, then the image (service.api.stream)."""
        progress = stream.UpscaleProgress()
        async with disconnect_watch(request.receive) as cancel:  # until the stream begins
            task = asyncio.ensure_future(
                path.model.upscale(opened, path, options, deadline, cancel, progress.report)
            )
            progress.follow(task)

            async def stop() -> None:
                cancel.cancel()
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

            try:
                first = await progress.first(task)
            except BaseException:
                await stop()
                raise
        request.state.model, request.state.version = path.model.name, path.model.version
        lines = progress.lines(first, task, upscale_headers, MEDIA_TYPES)
        return stream.Stream(lines, stop)

    return api


def _wants_progress(accept: str | None) -> bool:
    """Accept prefers NDJSON to the image (*/* means the image)."""
    if not accept or stream.NDJSON not in accept.lower():
        return False
    return negotiate(accept, [*MEDIA_TYPES.values(), stream.NDJSON]) == stream.NDJSON


def upscale_headers(result: Upscaled) -> dict[str, str]:
    """What the answer says about how it was made: the models, the blend, the resize."""
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


def _check_upload_type(content_type: str | None) -> None:
    media = media_type(content_type)
    if media not in UPLOAD_MEDIA_TYPES:
        allowed = ", ".join(UPLOAD_MEDIA_TYPES)
        raise UnsupportedMediaType(
            f"Content-Type {media or '(none)'!r} is not accepted; send one of: {allowed}"
        )
