"""GET /healthz, /readyz and /metrics: for load balancers, orchestrators and Prometheus."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from service.api.responses import json_response
from service.api.route import ServiceRoute
from service.lifecycle.registry import ModelRegistry
from service.metrics import CONTENT_TYPE, ServiceMetrics


def router(registry: ModelRegistry, metrics: ServiceMetrics) -> APIRouter:
    api = APIRouter(route_class=ServiceRoute)

    @api.get("/healthz")
    async def healthz(request: Request) -> Response:
        """Alive: the process answers. Says nothing about the models (that is /readyz)."""
        return json_response({"status": "ok"})

    @api.get("/readyz", responses={503: {"description": "starting, draining, or a model failed to load"}})
    async def readyz(request: Request) -> Response:
        """200 only when every model is loaded and warmed up; 503 while starting or draining."""
        ready, body = registry.readiness()
        return json_response(body, 200 if ready else 503)

    @api.get(
        "/metrics",
        responses={
            200: {
                "description": "Prometheus text format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
    async def metrics_text(request: Request) -> Response:
        """Prometheus text format."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return api
