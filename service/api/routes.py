"""Thin routers: parse, call the engine, shape the answer."""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from starlette.responses import Response

from service.api.deps import DeadlineDep, EngineDep, disconnect_watch
from service.api.schemas import ErrorBody, GenerateBody, GenerateResponse
from service.encoding import FORMAT_OF_MEDIA_TYPE, MEDIA_TYPES
from service.engine import GenerateResult, GenerateSpec
from service.errors import NotAcceptable
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
    async with disconnect_watch(request) as cancel:
        result = await engine.generate(spec, deadline, cancel)
    request.state.model, request.state.version = result.model, result.version
    if binary:
        image = result.images[0]
        headers = {"X-Seed": str(image.seed), "X-Model": result.model, "X-Model-Version": str(result.version)}
        if image.label is not None:
            headers["X-Label"] = str(image.label)
        return Response(image.data, media_type=MEDIA_TYPES[fmt], headers=headers)
    return _json(_generate_payload(result))


def _generate_payload(result: GenerateResult) -> dict[str, Any]:
    return {
        "model": result.model,
        "version": result.version,
        "format": result.fmt,
        "height": result.height,
        "width": result.width,
        "channels": result.channels,
        "images": [
            {
                "seed": image.seed,
                "label": image.label,
                "label_name": image.label_name,
                "data": base64.b64encode(image.data).decode("ascii"),
            }
            for image in result.images
        ],
    }


@router.get("/v1/models")
async def list_models(engine: EngineDep) -> Response:
    """Manifests of the served models (with the execution provider each runs on), and the models
    that failed to load with the reason."""
    return _json({"models": engine.model_infos(), "failed": engine.failures})


@router.get("/healthz")
async def healthz() -> Response:
    """Alive: the process answers. Says nothing about the models (that is /readyz)."""
    return _json({"status": "ok"})


@router.get("/readyz", responses={503: {"description": "starting, draining, or a model failed to load"}})
async def readyz(engine: EngineDep) -> Response:
    """200 only when every model is loaded and warmed up; 503 while starting or draining."""
    ready, body = engine.readiness()
    return _json(body, 200 if ready else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
