"""GET /v1/models: what is served, what failed, and this server's request limits."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from service.api.responses import json_response
from service.api.route import ServiceRoute
from service.lifecycle.registry import ModelRegistry


def router(registry: ModelRegistry) -> APIRouter:
    api = APIRouter(route_class=ServiceRoute)

    @api.get("/v1/models")
    async def list_models(request: Request) -> Response:
        """Every loaded version's manifest (with the execution provider it runs on, the memory it
        took, and whether it is the default or a canary), each model's versions (policy,
        published, loaded, loading, failed, routing), what failed to load and why, and this
        server's request limits."""
        return json_response(
            {
                "models": registry.infos(),
                "versions": registry.version_states(),
                "failed": registry.failures,
                "limits": registry.limits(),
            }
        )

    return api
