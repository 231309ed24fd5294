"""GET /v1/models: what is served, what failed, and this server's request limits."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from service.api.responses import json_response
from service.api.route import ServiceRoute
from service.registry import ModelRegistry


def router(registry: ModelRegistry) -> APIRouter:
    api = APIRouter(route_class=ServiceRoute)

    @api.get("/v1/models")
    async def list_models(request: Request) -> Response:
        """Manifests of the served models (with the execution provider each runs on and the memory
        it took), the models that failed to load with the reason, and this server's request limits."""
        return json_response(
            {"models": registry.infos(), "failed": registry.failures, "limits": registry.limits()}
        )

    return api
