"""The FastAPI application: settings, metrics and the engine on app.state; one middleware."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

from service.access_log import AccessLog
from service.api.auth import ApiKeyAuth, load_api_keys
from service.api.errors import install_error_handlers
from service.api.hot_paths import HotPaths
from service.api.middleware import RequestContextMiddleware
from service.api.playground import load_assets, playground_routes
from service.api.routes import router
from service.config import Settings
from service.engine import Engine
from service.metrics import ServiceMetrics


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = ServiceMetrics()
    engine = Engine(settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        # What exists now (modules, sessions, manifests) lives as long as the process: keep the
        # garbage collector from walking it again on every full collection.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await engine.stop()

    app = FastAPI(
        title="gan-serving",
        summary="GAN image generators and super-resolution upscalers, batched on ONNX Runtime.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.engine = engine
    # The routes are added to the app itself rather than through include_router: an included
    # router adds routing layers that every request pays for.
    app.router.routes.extend(router.routes)
    assets = load_assets() if settings.playground else {}
    app.router.routes.extend(playground_routes(assets))
    app.state.static_paths = frozenset(assets)  # open without an API key: they hold no data
    install_error_handlers(app)
    return app


def create_service(settings: Settings, access_log: AccessLog | None = None) -> tuple[ASGIApp, FastAPI]:
    """The ASGI application uvicorn runs, and the FastAPI app inside it. Outermost: request ids,
    body limit, metrics and the access log for every request; then the API key check (when keys
    are configured); then the hot path for POST /generate; then FastAPI for everything else (and
    the lifespan). Raises ValueError when the API keys cannot be loaded."""
    app = create_app(settings)
    hot = HotPaths(app, app.state.engine, settings)
    keys = load_api_keys(settings)
    auth = ApiKeyAuth(hot, keys, settings.auth_health, settings.auth_metrics, app.state.static_paths)
    return RequestContextMiddleware(auth, app.state.metrics, settings.max_body_bytes, access_log), app
