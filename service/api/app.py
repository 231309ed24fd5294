"""The application: one registry of served models, one router per resource, the layers every
request passes through, and the lifespan that loads the models and retires them.

A request's path, outermost first: the door (service.transport.door: while a model sheds load, its
requests are refused in uvicorn's protocol, before any of this) -> RequestContextMiddleware
(request id, body limit, metrics, access log) -> ApiKeyAuth (when keys are set) -> AdminGuard (the
admin API's key) -> Dispatch (a service route's own handler, or FastAPI for everything else) -> the
route's endpoint -> the served model (service.served). New versions come in by
service.lifecycle.repository_watch.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

from service.api.auth import AdminGuard, ApiKeyAuth, load_admin_keys, load_api_keys
from service.api.errors import install_error_handlers
from service.api.middleware import RequestContextMiddleware
from service.api.playground import load_assets, playground_routes
from service.api.route import Dispatch
from service.api.routes import admin, generate, health, mix, models, upscale
from service.config import Settings
from service.lifecycle.registry import ModelRegistry
from service.lifecycle.repository_watch import RepositoryWatch
from service.metrics import ServiceMetrics
from service.request_ids import RequestIds
from service.transport.access_log import AccessLog
from service.transport.door import Door
from service.transport.pacer import Pacer


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = ServiceMetrics()
    registry = ModelRegistry(settings, metrics)
    watch = RepositoryWatch(registry, settings.repository_poll_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        watch.listen_for_sighup()
        await registry.start()
        # What exists now (modules, sessions, manifests) lives as long as the process: keep the
        # garbage collector from walking it again on every full collection.
        gc.collect()
        gc.freeze()
        watch.start()  # new versions from now on: see service.lifecycle.registry
        try:
            yield
        finally:
            await watch.stop()
            await registry.stop()

    app = FastAPI(
        title="gan-serving",
        summary="GAN image generators and super-resolution upscalers, batched on ONNX Runtime.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.registry = registry
    app.state.watch = watch
    # The service's routes come first: the router tries routes in order.
    routers = (
        generate.router(registry, settings),
        mix.router(registry, settings),
        upscale.router(registry, settings),
        models.router(registry),
        health.router(registry, metrics),
        admin.router(registry, load_admin_keys(settings)),
    )
    app.router.routes[:0] = [route for router in routers for route in router.routes]
    assets = load_assets() if settings.playground else {}
    app.router.routes.extend(playground_routes(assets))
    app.state.static_paths = frozenset(assets)  # open without an API key: they hold no data
    install_error_handlers(app)
    return app


def create_service(settings: Settings, access_log: AccessLog | None = None) -> tuple[ASGIApp, FastAPI]:
    """The ASGI application uvicorn runs, and the FastAPI app inside it (see the module's
    docstring for the layers), whose state holds the door (service.transport.door) for uvicorn's protocol.
    Raises ValueError when the API keys cannot be loaded."""
    app = create_app(settings)
    registry: ModelRegistry = app.state.registry
    ids = RequestIds()  # one series of ids for the door's answers and the application's
    app.state.door = door = Door(
        {**generate.screens(registry), **mix.screens(registry), **upscale.screens(registry)},
        registry.shedding,
        app.state.metrics,
        ids,
        access_log,
        Pacer(
            settings.refusal_pause_ms / 1000,
            settings.refusal_pause_max_ms / 1000,
            settings.overload_loop_share,
            settings.overload_discard_mb_s * (1 << 20),
        ),
        settings.max_body_bytes,
        enabled=settings.refuse_early,
    )
    registry.shedding.on_room.append(door.pacer.room)
    dispatch = Dispatch(app, app.routes)
    keys = load_api_keys(settings)
    admin_keys = load_admin_keys(settings)
    if keys:  # an admin key is an API key too
        keys += admin_keys
    guarded = AdminGuard(dispatch, admin_keys)
    auth = ApiKeyAuth(guarded, keys, settings.auth_health, settings.auth_metrics, app.state.static_paths)
    return RequestContextMiddleware(auth, app.state.metrics, settings.max_body_bytes, access_log, ids), app
