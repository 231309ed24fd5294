"""The service's routes: declared to FastAPI (so the OpenAPI document describes them), answered
without its per-request machinery (about 65 µs of a 500 µs request: docs/architecture.md).

Each route is an ASGI handler of its own: it builds the per-call context (service.api.call),
validates the body with the endpoint's request model (the pydantic model the OpenAPI document
shows), calls the endpoint, and turns any exception into its answer through `error_answer`. The
app's outermost layer (`Dispatch`) hands a request for one of these routes straight to its
handler; anything else goes through FastAPI.
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

from service.api.call import Call
from service.api.errors import error_answer
from service.config import Settings
from service.transport.door import PARSED_BODY

Endpoint = Callable[..., Awaitable[Response]]


class ServiceRoute(APIRoute):
    """An endpoint `async def f([body: SomeModel,] call: Call) -> Response`, or `async def
    f(request: Request) -> Response`: the body, when the endpoint takes one, is its JSON validated
    with SomeModel (or the model the door already parsed from it, service.transport.door)."""

    default_deadline_ms = 0  # set per app by `for_settings`

    @classmethod
    def for_settings(cls, settings: Settings) -> type[ServiceRoute]:
        """The route class of an app with these settings (FastAPI makes one route per endpoint)."""
        return type(cls.__name__, (cls,), {"default_deadline_ms": settings.default_deadline_ms})

    def __init__(self, path: str, endpoint: Endpoint, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.body: tuple[str, type[BaseModel]] | None = None
        self.call: str | None = None  # the name of the endpoint's Call parameter
        hints = typing.get_type_hints(endpoint)
        for name in inspect.signature(endpoint).parameters:
            hint = hints.get(name)
            if isinstance(hint, type) and issubclass(hint, BaseModel):
                self.body = (name, hint)
            elif hint is Call:
                self.call = name
        if self.body is not None and self.call is None:
            raise TypeError(f"{path}: an endpoint that takes a body takes its Call too")
        # HEAD is answered as GET is (uvicorn sends the headers without the body).
        self.allowed = frozenset(self.methods or ()) | ({"HEAD"} if "GET" in (self.methods or ()) else set())
        self.app = self.handle

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if scope["method"] not in self.allowed:  # the router matched the path alone
                raise HTTPException(405, headers={"Allow": ", ".join(sorted(self.allowed))})
            if self.call is None:
                response = await self.endpoint(Request(scope, receive))
            elif self.body is None:
                response = await self.endpoint(**{self.call: Call(scope, receive, self.default_deadline_ms)})
            else:
                data = await read_body(receive)
                name, model = self.body
                parsed = scope.get("state", {}).get(PARSED_BODY)
                body = parsed if type(parsed) is model else model.model_validate_json(data)
                call = Call(scope, receive, self.default_deadline_ms)
                call._body = data  # read already: Request.body() must not wait for it again
                response = await self.endpoint(**{name: body, self.call: call})
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
