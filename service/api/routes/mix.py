"""POST /mix: a style model's style-mixing grid, as JSON with base64 images, or (asked for by Accept)
the whole figure as one image's bytes."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from contract.media import MEDIA_TYPES
from service.api import answers
from service.api.call import Call
from service.api.lifetime import DEADLINE_HEADER
from service.api.negotiation import figure_format
from service.api.responses import ERRORS
from service.api.route import ServiceRoute
from service.config import Settings
from service.lifecycle.registry import ModelRegistry
from service.schemas.answers import Mixed
from service.schemas.requests import MixRequest
from service.served.style import StyleGenerator
from service.transport.screen import Screen, Screened


def mixer_for(registry: ModelRegistry, body: MixRequest) -> StyleGenerator:
    """The served style model that answers `body` (its first row seed picks the canary's share)."""
    return registry.resolve(body.model, StyleGenerator, body.row_seeds[0] if body.row_seeds else None)


def screens(registry: ModelRegistry) -> dict[str, Screen]:
    """How the door (service.transport.door) reads this route's requests: the JSON body names the
    model; the body it validated goes on to the route."""

    def mixers(query: bytes, body: bytes) -> Screened:
        request = MixRequest.model_validate_json(body)
        return Screened([mixer_for(registry, request)], request)

    return {"/mix": Screen(mixers, needs_body=True)}


def router(registry: ModelRegistry, settings: Settings) -> APIRouter:
    api = APIRouter(route_class=ServiceRoute.for_settings(settings))

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
    async def mix(body: MixRequest, call: Call) -> Response:
        """Style mixing (StyleGAN, figure 3): every row source's styles in the crossover's layers
        over every column source's, with each source's own image. Batched with /generate."""
        figure = figure_format(call.accept, body.format)
        if figure is not None:
            body = body.model_copy(update={"grid": True, "format": figure})
        model = mixer_for(registry, body)
        async with call.watch() as cancel:
            result = await model.mix(body, call.deadline, cancel)
        call.served_by(result.model, result.version)
        if figure is not None and result.grid is not None:
            return answers.image_answer(call, result.grid, result.format)
        return answers.json_answer(call, answers.mixed_json(result))

    return api
