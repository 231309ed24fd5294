"""The door: overload refusals answered by the HTTP protocol, before the application.

While a model's queue is shedding (service.served.admission) the application would refuse any
request for it, at about 130 us of the event loop each. The door answers such a request itself,
about 12 us, as soon as the request names its model (the query for /upscale, at the headers; the
small JSON body for /generate, /walk and /mix), and only when every model it could run on is
shedding: it never refuses what the application would take, and its answer is the application's.
The connection it refused is then paced (service.transport.pacer). HTTP/1.1 stays usable: a
refused body is read and dropped. DoorProtocol builds on the guard's (connection_guard).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import httptools

from contract.errors import ServiceError
from service.metrics import ServiceMetrics
from service.request_ids import RequestIds
from service.served.admission import Shedding
from service.transport.access_log import AccessLog
from service.transport.connection_guard import (
    ConnectionGuard,
    ConnectionLimits,
    GuardedHttpToolsProtocol,
    Phase,
)
from service.transport.pacer import Pacer
from service.transport.screen import Screen, Screening
from service.transport.uvicorn_internals import HttpToolsProtocol

log = logging.getLogger("gan.door")

REFUSED = "refused_for_overload"  # key in the request's ASGI state: the application answered 429
# (its value: the answer's Retry-After, in seconds)
PARSED_BODY = "parsed_body"  # key in the request's ASGI state: the body the door validated


def idle_grace(retry_after: float) -> float:
    """How much longer than keep_alive_s a connection refused with this Retry-After is kept open
    while idle: a client that waits it out, with up to half of it again as jitter (gan-client
    adds up to a fifth), finds its connection still there, instead of racing the server's close
    with its next request."""
    return 1.5 * retry_after


MAX_SCREENED_BODY = 64 * 1024  # a bigger body goes to the application unread by the door


class Door:
    """One server's door: the routes' screens, and how a refusal is answered and counted."""

    def __init__(
        self,
        screens: Mapping[str, Screen],
        shedding: Shedding,
        metrics: ServiceMetrics,
        request_ids: RequestIds,
        access_log: AccessLog | None,
        pacer: Pacer,
        max_body_bytes: int,
        enabled: bool = True,
    ) -> None:
        self.screens = {path.encode(): screen for path, screen in screens.items()}  # POST path -> screen
        self.shedding = shedding
        self.metrics = metrics
        self.request_ids = request_ids
        self.access_log = access_log
        self.pacer = pacer
        self.max_body_bytes = max_body_bytes
        self.enabled = enabled
        self._counted: dict[str, tuple[Any, Any, Any]] = {}  # endpoint -> its metrics' children
        # Answers but for their request id, by (message, Retry-After, close), for these headers.
        self._headers: list[tuple[bytes, bytes]] = []
        self._answers: dict[tuple[str, int, bool], tuple[bytes, bytes]] = {}

    def protocol_class(self, guard: ConnectionGuard) -> type[HttpToolsProtocol]:
        """The protocol class for uvicorn.Config(http=...): the guard's, with this door."""
        return type("DoorHttpToolsProtocol", (DoorProtocol,), {"guard": guard, "door": self})

    def screen(self, method: bytes, path: bytes) -> Screen | None:
        """The screen for a request while some queue is shedding; None: it goes to the application."""
        if not self.enabled or method != b"POST" or not self.shedding:
            return None
        return self.screens.get(path)

    def answer(self, request: Screening, default_headers: list[tuple[bytes, bytes]]) -> bytes | None:
        """The refusal to write for this request, or None when it goes to the application."""
        if request.declared > self.max_body_bytes:  # the application's 413, which a retry cannot change
            return None
        try:
            models, request.parsed = request.screen.targets(request.query, bytes(request.body))
        except (ServiceError, ValueError):  # unreadable, unknown model, ...: the application says so
            return None
        if not models or not all(model.admission.shedding for model in models):
            return None
        request.refused_by = models[0].admission
        request_id = self._request_id(request.headers)
        message, retry_after = request.refused_by.refusal(request_id)
        request.retry_after = retry_after
        if default_headers is not self._headers:  # uvicorn makes a new list when the Date changes
            self._headers, self._answers = default_headers, {}
        key = (message, retry_after, request.close)
        parts = self._answers.get(key)
        if parts is None:
            parts = self._answers[key] = self._answer_parts(message, retry_after, request.close)
        self._count(request, request_id)
        return parts[0] + request_id.encode() + parts[1]

    def _answer_parts(self, message: str, retry_after: int, close: bool) -> tuple[bytes, bytes]:
        """A refusal's bytes before and after its request id."""
        body = json.dumps({"error": {"code": "queue_full", "message": message}}).encode()
        head = [b"HTTP/1.1 429 Too Many Requests\r\n"]
        head += [name + b": " + value + b"\r\n" for name, value in self._headers]
        head.append(
            b"content-type: application/json\r\ncontent-length: %d\r\nretry-after: %d\r\n"
            % (len(body), retry_after)
        )
        tail = b"\r\nconnection: close\r\n\r\n" if close else b"\r\n\r\n"
        return b"".join(head) + b"x-request-id: ", tail + body

    def _request_id(self, headers: Iterable[tuple[bytes, bytes]]) -> str:
        given = next((value for name, value in headers if name == b"x-request-id"), None)
        return self.request_ids.choose(given)

    def _count(self, request: Screening, request_id: str) -> None:
        """As the middleware counts an answer (the model unnamed, as in the application's 429s)."""
        elapsed = time.perf_counter() - request.started
        children = self._counted.get(request.path)
        if children is None:
            children = self._counted[request.path] = (
                self.metrics.requests.labels(request.path, "", "", "429"),
                self.metrics.latency.labels(request.path, ""),
                self.metrics.refused_at_door.labels(request.path),
            )
        children[0].inc()
        children[1].observe(elapsed)
        children[2].inc()
        if self.access_log is not None and self.access_log.enabled():
            client = request.client[0] if request.client else None
            self.access_log.record((request_id, "POST", request.path, 429, elapsed, "", client))


class _NoEvent:
    def set(self) -> None:
        return None


class _Answered:
    """Stands in for uvicorn's request cycle while the door has a request, and after it answered
    one: uvicorn's callbacks then see an answered request and leave it alone."""

    response_started = response_complete = True
    disconnected = False
    keep_alive = True
    message_event = _NoEvent()  # set by uvicorn on a cycle when the connection goes


ANSWERED: Any = _Answered()


class DoorProtocol(GuardedHttpToolsProtocol):
    """uvicorn's HTTP protocol (with the slow-client guard) and the door in front of the
    application. While some queue is shedding, a request to a screened route is kept from uvicorn
    at its headers: the door answers it, or hands it to uvicorn as if it had never looked (the
    headers, and the body read so far)."""

    door: ClassVar[Door]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._screening: Screening | None = None
        # Refused last (by the door, or by the application with uvicorn's keep-alive timer
        # cancelled): idle since, and for how much longer than keep_alive_s it may stay so.
        self._idle_since: float | None = None
        self._idle_grace = 0.0
        self._shutting_down = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._idle_since = None

    def on_headers_complete(self) -> None:
        previous = self.cycle
        # Not while an earlier request of the connection is being answered (pipelining): uvicorn
        # queues this one, and the door's answer must not come before the earlier one's.
        if previous is not None and not previous.response_complete:
            super().on_headers_complete()
            return
        path, _, query = self.url.partition(b"?")
        if not path.startswith(b"/"):  # absolute-form, or not a path: let httptools read it
            url = httptools.parse_url(self.url)
            path, query = url.path, url.query or b""
        screen = self.door.screen(self.parser.get_method(), path)
        if screen is None:
            super().on_headers_complete()
            return
        self._screening = request = Screening(
            screen,
            path.decode("ascii", "replace"),
            query.partition(b"#")[0],
            self.headers,
            self.client,
            previous,
            close=(
                self.expect_100_continue
                or self.parser.get_http_version() == "1.0"
                or not self.parser.should_keep_alive()
            ),
            expect_100=self.expect_100_continue,
        )
        self.cycle = ANSWERED
        self.headers_received()  # the guard's clock for the body
        if not screen.needs_body:
            self._decide(request)
        elif request.expect_100:  # its body comes only once the application asks for it
            self._hand_over(request)

    def on_body(self, body: bytes) -> None:
        request = self._screening
        if request is None:
            super().on_body(body)
            return
        self.body_received(len(body))
        if request.refused:
            self.door.pacer.discarded(len(body))
            return
        request.body += body
        if len(request.body) > MAX_SCREENED_BODY:  # too big to screen: the application reads it
            self._hand_over(request)

    def on_message_complete(self) -> None:
        request = self._screening
        if request is None:
            super().on_message_complete()
            return
        self.request_received()
        request.complete = True
        if request.refused:
            self._screening = None
            self._finish(request)
        else:
            self._decide(request)

    def shutdown(self) -> None:
        """The server is shutting down: a request the door has is still answered (uvicorn would
        close the connection, taking ANSWERED for a request answered), then the connection closes."""
        request = self._screening
        if request is None:
            super().shutdown()
            return
        request.close = True  # the door's answer closes it; a request handed over is not kept alive
        self._shutting_down = True

    def connection_lost(self, exc: Exception | None) -> None:
        self._screening = None  # no task was started for it
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        scope = getattr(self.cycle, "scope", None)  # (ANSWERED has none)
        if scope is None or REFUSED not in scope["state"]:
            return
        self.door.pacer.pause(self)  # the application refused it for overload
        # Idle from now, kept through its Retry-After; not when the next request has begun (its
        # headers not all in yet, uvicorn armed its timer anyway: its first bytes cancel it).
        if self.timeout_keep_alive_task is not None and self._phase is Phase.IDLE:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
            self._idle_since = self.loop.time()
            self._idle_grace = idle_grace(scope["state"][REFUSED])

    def overdue(self, now: float, limits: ConnectionLimits) -> str | None:
        # After a refusal no keep-alive timer of uvicorn's is armed: an idle connection is closed
        # here instead, keep_alive_s and the grace after its last request (or its pause's end).
        if self._idle_since is not None:
            if self.flow.read_paused:
                self._idle_since = now
            elif now - self._idle_since > self.timeout_keep_alive + self._idle_grace:
                return "idle"
        return super().overdue(now, limits)

    def _decide(self, request: Screening) -> None:
        try:
            answer = self.door.answer(request, self.server_state.default_headers)
        except Exception:  # a bug here must not lose the request: the application answers it
            log.exception("the door failed on a request to %s; handing it to the application", request.path)
            answer = None
        if answer is None:
            self._hand_over(request)
            return
        request.refused = True
        self.transport.write(answer)
        if request.expect_100:  # the client waits for 100 Continue before its body: none comes
            self._screening = None
            self.transport.close()
        elif request.complete:
            self._screening = None
            self._finish(request)

    def _hand_over(self, request: Screening) -> None:
        """To uvicorn, as if the door had never looked: the headers, then what came of the body."""
        self._screening = None
        self.cycle = request.previous
        GuardedHttpToolsProtocol.on_headers_complete(self)
        if request.parsed is not None:  # the route takes it instead of validating the body again
            self.scope["state"][PARSED_BODY] = request.parsed
        if self._shutting_down:
            self.cycle.keep_alive = False
        if request.body:
            HttpToolsProtocol.on_body(self, bytes(request.body))
            self.body_received(len(request.body))
        if request.complete:
            GuardedHttpToolsProtocol.on_message_complete(self)

    def _finish(self, request: Screening) -> None:
        """A refused request's body is all in: close, or pace the connection."""
        self.server_state.total_requests += 1
        if request.close:
            self.transport.close()
            return
        self._idle_since = self.loop.time()
        self._idle_grace = idle_grace(request.retry_after)
        self.door.pacer.pause(self, request.refused_by)
