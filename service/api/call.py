"""One request's context beyond its body, built once by its route (ServiceRoute) before the
endpoint runs: the deadline, the Accept header, the disconnect watch, and the model and version
that answer it. Endpoints are `async def endpoint(body, call) -> Response`; the answers they make
(service.api.answers) take their model headers from the call."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from starlette.requests import Request
from starlette.types import Receive, Scope

from service.api.lifetime import deadline_from_header, disconnect_watch
from service.served.batcher import CancelToken


def header(scope: Scope, name: bytes) -> str | None:
    """One request header's value (`name` in lowercase, as ASGI gives it), without building the
    Headers of a Request for it."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class Call(Request):
    """The request (a Starlette Request, for what only it reads: a multipart form, the query
    string) with its context. FastAPI reads an endpoint's Request parameter as no field of the
    OpenAPI document, as it should read this one."""

    def __init__(self, scope: Scope, receive: Receive, default_deadline_ms: int) -> None:
        super().__init__(scope, receive)
        self.deadline = deadline_from_header(header(scope, b"x-deadline-ms"), default_ms=default_deadline_ms)
        self.accept = header(scope, b"accept")
        self.model: str | None = None
        self.version: int | None = None

    def watch(self) -> AbstractAsyncContextManager[CancelToken]:
        """A token cancelled when the client disconnects (enter it once the body is read)."""
        return disconnect_watch(self._receive)

    def served_by(self, model: str, version: int) -> None:
        """The model version that answers: in the answer's headers, the access log and the metrics."""
        self.model, self.version = model, version
        state: dict[str, Any] = self.scope.setdefault("state", {})
        state["model"], state["version"] = model, version

    def model_headers(self) -> dict[str, str]:
        """X-Model and X-Model-Version: made here only."""
        if self.model is None:
            return {}
        return {"X-Model": self.model, "X-Model-Version": str(self.version)}
