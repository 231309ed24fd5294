"""POST /generate and POST /walk: a generator's images, as JSON with base64 files, or (one image,
asked for by Accept) as the image's own bytes; a walk also as one animated file."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from contract.errors import InvalidRequest
from contract.media import ANIMATION_MEDIA_TYPES, MEDIA_TYPES
from service.api import answers, stream
from service.api.call import Call
from service.api.lifetime import DEADLINE_HEADER
from service.api.negotiation import accept_animation, image_format, wants_stream
from service.api.responses import ERRORS
from service.api.route import ServiceRoute
from service.config import Settings
from service.lifecycle.registry import ModelRegistry
from service.schemas.answers import Generated, StyleGenerated, StyleImage, Walk, WalkAnimation
from service.schemas.requests import GenerateRequest, WalkRequest
from service.served.generator import Generator
from service.served.style import StyleGenerator
from service.transport.screen import Screen, Screened


def generator_for(registry: ModelRegistry, body: GenerateRequest) -> Generator:
    """The served generator that answers `body` (its first seed picks the canary's share)."""
    return registry.resolve(body.model, Generator, body.seed if body.seeds is None else body.seeds[0])


def walker_for(registry: ModelRegistry, body: WalkRequest) -> Generator:
    return registry.resolve(body.model, Generator, body.waypoints[0])


def screens(registry: ModelRegistry) -> dict[str, Screen]:
    """How the door (service.transport.door) reads these routes' requests: the JSON body names the
    model; the body it validated goes on to the route."""

    def generators(query: bytes, body: bytes) -> Screened:
        request = GenerateRequest.model_validate_json(body)
        return Screened([generator_for(registry, request)], request)

    def walkers(query: bytes, body: bytes) -> Screened:
        request = WalkRequest.model_validate_json(body)
        return Screened([walker_for(registry, request)], request)

    return {"/generate": Screen(generators, needs_body=True), "/walk": Screen(walkers, needs_body=True)}


def router(registry: ModelRegistry, settings: Settings) -> APIRouter:
    api = APIRouter(route_class=ServiceRoute.for_settings(settings))

    async def _stream(body: GenerateRequest, call: Call) -> Response:
        """The answer as NDJSON, each image sent as its batch finishes (service.api.stream)."""
        model = generator_for(registry, body)
        model.check_count(body.count)  # the whole request's: each part checks only its own
        requests = stream.parts(body, model.batcher.max_units, settings.max_n)
        # the client watched until the stream begins; from then on the Stream sees it leave
        async with call.watch() as cancel:
            tasks = await stream.start_parts(
                lambda part, token: model.generate(part, body.format, call.deadline, token), requests, cancel
            )
        call.served_by(model.name, model.version)
        head = {**model.answer_head(body.format), "n": body.count}
        if isinstance(model, StyleGenerator):
            head["truncation_psi"] = 1.0 if body.truncation_psi is None else body.truncation_psi
        lines = stream.generated_lines(head, requests, tasks, stream.image_fields)
        return answers.stream_answer(call, lines, lambda: stream.cancel_all(tasks, cancel))

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
    async def generate(body: GenerateRequest, call: Call) -> Response:
        """n images from consecutive seeds (or the seeds given), with a label each when the
        model is conditional."""
        if wants_stream(call.accept, body.count, body.format):
            return await _stream(body, call)
        binary = image_format(call.accept, body.count, body.format)
        if binary and body.return_latents:
            raise InvalidRequest("return_latents needs the JSON answer (Accept: application/json)")
        model = generator_for(registry, body)
        async with call.watch() as cancel:
            result = await model.generate(body, binary or body.format, call.deadline, cancel)
        call.served_by(result.model, result.version)
        if binary:
            image = result.images[0]
            facts = {}
            if image.seed is not None:
                facts["X-Seed"] = str(image.seed)
            if image.label is not None:
                facts["X-Label"] = str(image.label)
            if isinstance(image, StyleImage) and image.noise_seed is not None:
                facts["X-Noise-Seed"] = str(image.noise_seed)
            return answers.image_answer(call, image.data, result.format, facts)
        return answers.generated(call, result)

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
    async def walk(body: WalkRequest, call: Call) -> Response:
        """A latent walk: `steps` images at even steps along the path between two seeds' latents
        (slerp or lerp), all with one label. The first image is from_seed's /generate image and
        the last is to_seed's (with the same label and truncation). With `seeds`, a loop through
        them and back to the first, `steps` frames per segment. With `animation`, one animated
        file instead of JSON."""
        if body.animation is not None:
            accept_animation(call.accept, body.animation)
        model = walker_for(registry, body)
        async with call.watch() as cancel:
            result = await model.walk(body, call.deadline, cancel)
        call.served_by(result.model, result.version)
        if isinstance(result, WalkAnimation):
            return answers.animation(call, result)
        return answers.json_answer(call, answers.walk_json(result))

    return api


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
