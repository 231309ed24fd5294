"""POST /upscale: an image (raw body or a multipart form's `file`) upscaled by a super-resolution model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from service.api.lifetime import DEADLINE_HEADER, deadline_from_header, disconnect_watch
from service.api.responses import ERRORS
from service.api.route import ServiceRoute, header
from service.config import Settings
from service.errors import InvalidRequest, UnsupportedMediaType
from service.media import MEDIA_TYPES, UPLOAD_MEDIA_TYPES, media_type
from service.registry import ModelRegistry
from service.schemas import ErrorBody, UpscaleOptions
from service.served import Upscaler

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
                "description": "the upscaled image (headers X-Input-Size, X-Output-Size as WIDTHxHEIGHT)",
                "content": {media: {} for media in MEDIA_TYPES.values()},
            },
        },
    )
    async def upscale(request: Request) -> Response:
        """The image as the raw body (Content-Type image/png, image/jpeg or image/webp) or as the
        `file` field of a multipart form. Alpha is upscaled beside the colour; EXIF orientation is
        applied; grayscale stays grayscale. Large images run as overlapping tiles."""
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
        # Resolved once the upload is in: a model replaced while a slow upload arrives is not
        # held for it, and the request counts as the model's from here on.
        model = registry.resolve(options.model, Upscaler)
        async with disconnect_watch(request.receive) as cancel:
            result = await model.upscale(data, options.format, deadline, cancel)
        request.state.model, request.state.version = result.model, result.version
        headers = {
            "X-Model": result.model,
            "X-Model-Version": str(result.version),
            "X-Input-Size": "{}x{}".format(*result.input_size),
            "X-Output-Size": "{}x{}".format(*result.output_size),
        }
        return Response(result.data, media_type=MEDIA_TYPES[result.format], headers=headers)

    return api


def _check_upload_type(content_type: str | None) -> None:
    media = media_type(content_type)
    if media not in UPLOAD_MEDIA_TYPES:
        allowed = ", ".join(UPLOAD_MEDIA_TYPES)
        raise UnsupportedMediaType(
            f"Content-Type {media or '(none)'!r} is not accepted; send one of: {allowed}"
        )
