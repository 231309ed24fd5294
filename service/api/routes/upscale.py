"""POST /upscale: an image (raw body or a multipart form's `file`) upscaled by a super-resolution model."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from starlette.datastructures import QueryParams, UploadFile
from starlette.responses import Response

from contract.errors import InvalidRequest, UnsupportedMediaType
from contract.media import MEDIA_TYPES, UPLOAD_MEDIA_TYPES, media_type
from service.api import answers, stream
from service.api.call import Call
from service.api.lifetime import DEADLINE_HEADER
from service.api.negotiation import wants_progress
from service.api.responses import ERRORS
from service.api.route import ServiceRoute
from service.config import Settings
from service.images.imaging import OpenedImage, open_image
from service.lifecycle.registry import ModelRegistry
from service.lifecycle.upscale_path import UpscalePath, candidates, choose_path
from service.schemas.answers import ErrorBody
from service.schemas.requests import UpscaleOptions
from service.transport.screen import Screen, Screened

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

    def upscalers(query: bytes, body: bytes) -> Screened:
        return Screened(candidates(registry, UpscaleOptions.model_validate(dict(QueryParams(query)))), None)

    return {"/upscale": Screen(upscalers, needs_body=False)}


def router(registry: ModelRegistry, settings: Settings) -> APIRouter:
    api = APIRouter(route_class=ServiceRoute.for_settings(settings))

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
    async def upscale(call: Call) -> Response:
        """The image as the raw body (Content-Type image/png, image/jpeg or image/webp) or as the
        `file` field of a multipart form. Alpha is upscaled beside the colour; EXIF orientation is
        applied; grayscale stays grayscale. Large images run as overlapping tiles. Any output size:
        `scale`, or `width`/`height` with `fit`; the server picks the model and resizes after it.
        `detail` blends a family's faithful and detail models."""
        options = UpscaleOptions.model_validate(dict(call.query_params))
        content_type = call.headers.get("content-type", "")
        if media_type(content_type) == "multipart/form-data":
            form = await call.form(max_files=1, max_fields=8)
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise InvalidRequest("the multipart form needs the image in a field named 'file'")
            if upload.content_type not in (None, "", "application/octet-stream"):
                _check_upload_type(upload.content_type)
            data = await upload.read()
        else:
            _check_upload_type(content_type)
            data = await call.body()
        opened = open_image(data, settings.max_input_pixels)  # the header only
        # Resolved once the upload is in: a model replaced while a slow upload arrives is not
        # held for it, and the request counts as the model's from here on.
        path = choose_path(registry, options, opened.width, opened.height)
        if wants_progress(call.accept):
            return await _progress(call, opened, path, options)
        async with call.watch() as cancel:
            result = await path.model.upscale(opened, path, options, call.deadline, cancel)
        call.served_by(result.model, result.version)
        return answers.upscaled(call, result)

    async def _progress(
        call: Call, opened: OpenedImage, path: UpscalePath, options: UpscaleOptions
    ) -> Response:
        """NDJSON: a line as each row of tiles finishes, then the image (service.api.stream)."""
        progress = stream.UpscaleProgress()
        async with call.watch() as cancel:  # until the stream begins
            task = asyncio.ensure_future(
                path.model.upscale(opened, path, options, call.deadline, cancel, progress.report)
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
        call.served_by(path.model.name, path.model.version)
        lines = progress.lines(first, task, answers.upscale_headers, MEDIA_TYPES)
        return stream.Stream(lines, stop)

    return api


def _check_upload_type(content_type: str | None) -> None:
    media = media_type(content_type)
    if media not in UPLOAD_MEDIA_TYPES:
        allowed = ", ".join(UPLOAD_MEDIA_TYPES)
        raise UnsupportedMediaType(
            f"Content-Type {media or '(none)'!r} is not accepted; send one of: {allowed}"
        )
