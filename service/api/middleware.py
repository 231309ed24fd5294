"""One pure-ASGI middleware for what every request gets: an id (X-Request-ID, echoed or made),
the body size limit (413), request metrics, and one structured access-log line. It runs for
every request, so it reads only the headers it needs and caches its metric children."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_response
from service.metrics import ServiceMetrics
from service.request_ids import RequestIds, set_current_request_id
from service.transport.access_log import AccessLog
from service.transport.connection_guard import TIMED_OUT
from service.transport.door import REFUSED


def retry_after(headers: list[tuple[bytes, bytes]]) -> float:
    """An answer's Retry-After in seconds (0: none, or not a number of seconds)."""
    for name, value in headers:
        if name.lower() == b"retry-after":
            return float(value) if value.isdigit() else 0.0
    return 0.0


log = logging.getLogger("gan.requests")

# Metric labels come from this fixed set, never from the raw path (unbounded cardinality).
ENDPOINTS = {"/generate", "/walk", "/mix", "/upscale", "/v1/models", "/healthz", "/readyz", "/metrics"}


class BodyTooLarge(HTTPException):
    """Raised from receive(): an HTTPException, so the framework's body parsing passes it on."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is over {limit} bytes")


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: ServiceMetrics,
        max_body_bytes: int,
        access_log: AccessLog | None = None,
        ids: RequestIds | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log
        self.ids = (
            ids or RequestIds()
        )  # shared with the door (service.transport.door), which answers some requests
        self._children: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}
        self._in_flight: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = declared = None
        for key, value in scope["headers"]:  # header names arrive lower-cased (ASGI)
            if key == b"x-request-id":
                given = value if given is None else given  # the first, as the door reads it
            elif key == b"content-length":
                declared = value
        request_id = self.ids.choose(given)
        set_current_request_id(request_id)
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else "other"
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = {"code": 500, "started": False}
        limit = self.max_body_bytes

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
                if (
                    status["code"] == 429
                ):  # refused for overload: the connection is paced (service.transport.door)
                    state[REFUSED] = retry_after(message.get("headers", []))
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        in_flight = self._in_flight.get(endpoint)
        if in_flight is None:
            in_flight = self._in_flight[endpoint] = self.metrics.in_flight.labels(endpoint)
        in_flight.inc()
        try:
            if declared is not None and declared.isdigit() and int(declared) > limit:
                await error_response(413, "payload_too_large", f"the body is over {limit} bytes")(
                    scope, receive, send_with_id
                )
            else:
                await self.app(scope, receive_limited, send_with_id)
        except BodyTooLarge:
            if not status["started"]:
                await error_response(413, "payload_too_large", f"the body is over {limit} bytes")(
                    scope, receive, send_with_id
                )
        finally:
            in_flight.dec()
            elapsed = time.perf_counter() - started
            model = str(state.get("model", ""))
            version = str(state.get("version", ""))
            # The guard timed the client out mid-request (408), or the client left unanswered (499).
            code = 408 if TIMED_OUT in state else status["code"] if status["started"] else 499
            if endpoint != "/metrics":
                key = (endpoint, model, version, str(code))
                children = self._children.get(key)
                if children is None:  # labels() is slow enough to matter per request: cache it
                    children = (
                        self.metrics.requests.labels(*key),
                        self.metrics.latency.labels(endpoint, model),
                    )
                    self._children[key] = children
                children[0].inc()
                children[1].observe(elapsed)
            if log.isEnabledFor(logging.DEBUG):  # the access log has no version; debugging wants it
                log.debug(
                    "request %s: %s %s -> %d in %.1f ms (model %s, version %s)",
                    request_id,
                    scope["method"],
                    path,
                    code,
                    1000 * elapsed,
                    model or "-",
                    version or "-",
                )
            if self.access_log is not None and self.access_log.enabled():
                client = scope.get("client")
                self.access_log.record(
                    (request_id, scope["method"], path, code, elapsed, model, client[0] if client else None)
                )
