"""POST /mix: a style model's style-mixing grid, as JSON with base64 images, or (asked for by Accept)
the whole figure as one image's bytes."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from contract.errors import NotAcceptable
from contract.media import FORMAT_OF_MEDIA_TYPE, JSON, MEDIA_TYPES, UPLOAD_FORMATS, negotiate, offers_for
from service.api.lifetime import DEADLINE_HEADER, deadline_from_header, disconnect_watch
from service.api.responses import ERRORS, json_response
from service.api.route import ServiceRoute, header
from service.api.routes.generate import head_fields, style_image_json
from service.config import Settings
from service.lifecycle.registry import ModelRegistry
from service.schemas import Mixed, MixRequest
from service.served.style import StyleGenerator
from service.transport.door import Screen


def mixer_for(registry: ModelRegistry, body: MixRequest) -> StyleGenerator:
    """The served style model that answers `body` (its first row seed picks the canary's share)."""
    return registry.resolve(body.model, StyleGenerator, body.row_seeds[0] if body.row_seeds else None)


def screens(registry: ModelRegistry) -> dict[str, Screen]:
    """How the door (service.transport.door) reads this route's requests: the JSON body names the model."""
    return {
        "/mix": Screen(
            lambda query, body: [mixer_for(registry, MixRequest.model_validate_json(body))], needs_body=True
        )
    }


def router(registry: ModelRegistry, settings: Settings) -> APIRouter:
    api = APIRouter(route_class=ServiceRoute)
    default_deadline_ms = settings.default_deadline_ms

    @api.post(
        "/mix",
        response_model=Mixed,
        responses={
            **ERRORS,
            200: {
                "description": "JSON with base64 images; or, with Accept: image/png|image/jpeg|image/webp, "
                "the grid figure's bytes",
                "content": {media: {} for media in MEDIA_TYPES.values() if media != MEDIA_TYPES["npy"]},
            },
        },
        openapi_extra={"parameters": [DEADLINE_HEADER]},
    )
    async def mix(request: Request, body: MixRequest) -> Response:
        """Style mixing (StyleGAN, figure 3): every row source's styles in the crossover's layers
        over every column source's, with each source's own image. Batched with /generate."""
        deadline = deadline_from_header(
            header(request.scope, b"x-deadline-ms"), default_ms=default_deadline_ms
        )
        figure_format = _figure_format(header(request.scope, b"accept"), body)
        if figure_format is not None:
            body = body.model_copy(update={"grid": True, "format": figure_format})
        model = mixer_for(registry, body)
        async with disconnect_watch(request.receive) as cancel:
            result = await model.mix(body, deadline, cancel)
        request.state.model, request.state.version = result.model, result.version
        if figure_format is not None and result.grid is not None:
            headers = {"X-Model": result.model, "X-Model-Version": str(result.version)}
            return Response(result.grid, media_type=MEDIA_TYPES[result.format], headers=headers)
        return json_response(mixed_json(result))

    return api


def _figure_format(accept: str | None, body: MixRequest) -> str | None:
    """The image format to answer with (the grid figure's bytes) when Accept prefers one to JSON."""
    if not accept or accept == "*/*":
        return None
    images = offers_for(body.format, UPLOAD_FORMATS)  # a figure is an image file, never .npy
    chosen = negotiate(accept, [JSON, *images])
    if chosen is None:
        raise NotAcceptable(f"the Accept header allows none of: {', '.join([JSON, *images])}")
    return None if chosen == JSON else FORMAT_OF_MEDIA_TYPE[chosen]


def mixed_json(result: Mixed) -> dict[str, Any]:
    """The /mix JSON answer (equal to the Mixed schema's serialization)."""
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
