"""Dependencies as Annotated aliases: the engine, the settings, a request's deadline.

They are `async def` on purpose: FastAPI runs a plain `def` dependency on its thread pool, which
would cost every request a thread round trip for a dictionary lookup."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request
from starlette.types import Receive

from service.batching import CancelToken
from service.config import Settings
from service.engine import Engine
from service.errors import InvalidRequest

MAX_DEADLINE_MS = 3_600_000


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_deadline(
    settings: Annotated[Settings, Depends(get_settings)],
    x_deadline_ms: Annotated[
        str | None, Header(description="milliseconds this request may take; 504 once that cannot be met")
    ] = None,
) -> float:
    """The request's deadline on the monotonic clock."""
    return deadline_from_header(x_deadline_ms, settings)


def deadline_from_header(value: str | None, settings: Settings) -> float:
    budget = settings.default_deadline_ms
    if value is not None:
        if not value.strip().isdigit() or not 1 <= int(value) <= MAX_DEADLINE_MS:
            raise InvalidRequest(f"X-Deadline-Ms must be an integer from 1 to {MAX_DEADLINE_MS}")
        budget = int(value)
    return time.monotonic() + budget / 1000


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
DeadlineDep = Annotated[float, Depends(get_deadline)]


@contextlib.asynccontextmanager
async def disconnect_watch(receive: Receive) -> AsyncIterator[CancelToken]:
    """A token that is cancelled when the client disconnects. Enter it only after the body has
    been read: from then on the only message the server can receive is the disconnect. The watch
    starts when the request's work is queued (a refused request never starts one)."""
    task: asyncio.Task[None] | None = None

    async def watch() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                token.cancel()
                return

    def start() -> None:
        nonlocal task
        task = asyncio.create_task(watch())

    token = CancelToken(start)
    try:
        yield token
    finally:
        if task is not None:
            task.cancel()
