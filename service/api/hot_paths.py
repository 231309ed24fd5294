"""POST /generate without the framework's per-request machinery.

Small generate requests arrive by the thousand per second, and on a 2-core machine the routing,
dependency and middleware layers of FastAPI cost as much CPU as the model itself. This ASGI layer
answers POST /generate directly, with the same parsing (GenerateBody), the same answer
(routes.answer_generate) and the same error bodies; every other request goes on to the FastAPI
app. The FastAPI route stays declared, so the OpenAPI document is unchanged.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.deps import deadline_from_header
from service.api.errors import error_response, validation_message
from service.api.routes import answer_generate
from service.api.schemas import GenerateBody
from service.config import Settings
from service.engine import Engine
from service.errors import ServiceError

log = logging.getLogger("gan.api")


class HotPaths:
    def __init__(self, app: ASGIApp, engine: Engine, settings: Settings) -> None:
        self.app = app
        self.engine = engine
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/generate" and scope["method"] == "POST":
            await self.generate(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def generate(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        if body is None:  # the client left before sending its body
            return
        headers = {k: v for k, v in scope["headers"] if k in (b"accept", b"x-deadline-ms")}
        accept = headers.get(b"accept")
        deadline_header = headers.get(b"x-deadline-ms")
        try:
            request = GenerateBody.model_validate_json(body)
            deadline = deadline_from_header(
                deadline_header.decode("latin-1") if deadline_header is not None else None, self.settings
            )
            response = await answer_generate(
                self.engine,
                request,
                accept.decode("latin-1") if accept is not None else None,
                deadline,
                receive,
                scope.setdefault("state", {}),
            )
        except ValidationError as e:
            response = error_response(422, "invalid_request", validation_message(e.errors()))
        except ServiceError as e:
            response = error_response(e.status, e.code, e.message, e.retry_after)
        except Exception:
            log.exception("unhandled error on POST /generate")
            response = error_response(500, "internal_error", "internal error; see the server log")
        await response(scope, receive, send)


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
