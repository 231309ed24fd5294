"""The service's routes: declared to FastAPI (so the OpenAPI document describes them), answered
without its per-request machinery.

A request to a small generator costs about 500 µs of CPU in all on a 2-core machine; FastAPI's
dependency resolution costs about 40 µs of that and its router and middleware stack about 25 µs
more (measured in-process). So each route here is an ASGI handler of its own: it builds the
Request, validates the body with the endpoint's request model (the same pydantic model the
OpenAPI document shows), calls the endpoint, and turns any exception into its answer through
`error_answer`. The app's outermost layer (`Dispatch`) hands a request for one of these routes
straight to that handler; anything else goes through FastAPI. Either way a route has one code path.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import error_answer

Endpoint = Callable[..., Awaitable[Response]]


class ServiceRoute(APIRoute):
    """An endpoint `async def f(request: Request[, body: SomeModel]) -> Response`: the body, when
    the endpoint takes one, is its JSON validated with SomeModel."""

    def __init__(self, path: str, endpoint: Endpoint, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.body: tuple[str, type[BaseModel]] | None = None
        hints = typing.get_type_hints(endpoint)
        for name in inspect.signature(endpoint).parameters:
            hint = hints.get(name)
            if isinstance(hint, type) and issubclass(hint, BaseModel):
                self.body = (name, hint)
        # HEAD is answered as GET is (uvicorn sends the headers without the body).
        self.allowed = frozenset(self.methods or ()) | ({"HEAD"} if "GET" in (self.methods or ()) else set())
        self.app = self.handle

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if scope["method"] not in self.allowed:  # the router matched the path alone
                raise HTTPException(405, headers={"Allow": ", ".join(sorted(self.allowed))})
            if self.body is None:
                response = await self.endpoint(Request(scope, receive))
            else:
                data = await read_body(receive)
                name, model = self.body
                body = model.model_validate_json(data)
                response = await self.endpoint(Request(scope, receive), **{name: body})
        except Exception as exc:
            response = error_answer(exc, scope["method"], scope["path"])
        await response(scope, receive, send)


async def read_body(receive: Receive) -> bytes:
    """A request's whole body (ClientDisconnect when the client leaves before sending it)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def header(scope: Scope, name: bytes) -> str | None:
    """One request header's value (`name` in lowercase, as ASGI gives it), without building the
    Headers of a Request for it."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class Dispatch:
    """The outermost app's shortcut: a request whose path and method are a ServiceRoute's goes
    straight to its handler; every other request goes to the FastAPI app (docs, playground, 404s,
    and the lifespan)."""

    def __init__(self, app: ASGIApp, routes: Iterable[Any]) -> None:
        self.app = app
        self.handlers: dict[tuple[str, str], ASGIApp] = {
            (method, route.path): route.handle
            for route in routes
            if isinstance(route, ServiceRoute)
            for method in route.allowed
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            handler = self.handlers.get((scope["method"], scope["path"]))
            if handler is not None:
                await handler(scope, receive, send)
                return
        await self.app(scope, receive, send)
