"""How long a request may take (X-Deadline-Ms) and whether its client is still there."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from starlette.types import Receive

from contract.errors import InvalidRequest
from service.served.batcher import CancelToken

MAX_DEADLINE_MS = 3_600_000
DEADLINE_HEADER = {
    "name": "X-Deadline-Ms",
    "in": "header",
    "required": False,
    "description": "milliseconds this request may take; 504 once that cannot be met",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_DEADLINE_MS},
}


def deadline_from_header(value: str | None, default_ms: int) -> float:
    """The request's deadline on the monotonic clock. Only ASCII digits count: str.isdigit()
    would also take '²', which int() refuses."""
    budget = default_ms
    if value is not None:
        digits = value.strip()
        if not (digits.isascii() and digits.isdigit()) or not 1 <= int(digits) <= MAX_DEADLINE_MS:
            raise InvalidRequest(f"X-Deadline-Ms must be an integer from 1 to {MAX_DEADLINE_MS}")
        budget = int(digits)
    return time.monotonic() + budget / 1000


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
