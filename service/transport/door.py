"""The door: overload refusals answered by the HTTP protocol, before the application, and the
connections they went to paced.

Under a burst far past capacity most requests must be refused, and where that is done decides
whether the models keep working. Through the application a refusal costs about 130 us of the
event loop (uvicorn's request cycle and task, the middleware, the route, the body's validation,
the JSON answer): clients that send again as soon as they are answered then keep the event loop's
core busy refusing while the lanes starve (the more so at a lower priority: inference_nice).
Two things prevent it.

- Refusing at the cheapest point. While a queue is shedding (service.served.batching: after a refusal
  for want of room, until the queue is half empty) the application would refuse any request for
  its model, whatever it asks for. The door answers such a request itself, as soon as the request
  names its model: at the headers for /upscale (the query names the model; an upload is answered
  before its body is read), once the small JSON body is in for /generate, /walk and /mix. About
  12 us: no task, no middleware, no route. It asks the route's own `Screen` which models the
  request could run on and refuses only when every one is shedding, so it never refuses what the
  application would take; its answer is the application's (status, JSON error, Retry-After,
  X-Request-ID, metrics, access log).
- Pacing. A connection whose request was refused for overload (by the door or by the
  application) is not read again for `refusal_pause_ms`. A client that sends again at once waits
  in its own socket meanwhile (TCP back-pressure, at no cost to the server); its refusal was not
  delayed. With N connections at most N / pause refusals a second can be asked for, so refusing
  stays a small share of a core however hard clients push, and the pause (30 ms by default) is
  short enough that a refused client is still answered within 50 ms.

HTTP/1.1 semantics are kept: a body refused at its headers is still read, and dropped unparsed,
so the connection stays usable; a client that sent Expect: 100-continue has not sent its body
and will not, so that answer says Connection: close and the connection is closed; so is a
request that asked for Connection: close, or came as HTTP/1.0, once its body is in.

The door subclasses the slow-client guard's protocol (service.transport.connection_guard), which checks at
start-up that the uvicorn internals both rely on are still there (uvicorn_mismatches).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from contract.errors import ServiceError
from service.metrics import ServiceMetrics
from service.served.batching import Batcher, Shedding
from service.served.model import ServedModel
from service.transport.access_log import AccessLog
from service.transport.connection_guard import (
    ConnectionGuard,
    ConnectionLimits,
    GuardedHttpToolsProtocol,
    Phase,
)
from service.transport.request_ids import RequestIds

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

Targets = Callable[[bytes, bytes], Sequence[ServedModel]]


@dataclass(frozen=True)
class Screen:
    """How the door reads one route's requests. `targets(query string, body)` gives the served
    models the request could run on (raising ServiceError or ValueError when it cannot tell: the
    application then answers); `needs_body`: whether it reads the body (a small JSON body) or the
    query alone (then the request is answered before its body is read)."""

    targets: Targets
    needs_body: bool


class Pacer:
    """Connections not read for a while after an overload refusal.

    The pause adapts to what refusing costs: every ADAPT_S while connections are being paused,
    the event loop's own CPU time is read, and the bytes of refused bodies it read and dropped
    (an upload refused at its headers still sends its body); with the event loop over
    `loop_share` of its core, or more than `discard_bytes_s` dropped a second, pauses grow by a
    quarter (up to `max_pause_s`); under half of both, they shrink by a fifth (down to
    `min_pause_s`). With N clients sending again at once, refusals come at about N / pause a
    second: the pause is the shortest that keeps that work within its share, so the lanes keep
    the rest of the cores however many clients push. A client that waits out its Retry-After
    (a second or more, longer than any pause) never meets one.

    All current pauses have about the same length, so they end in about the order they began: one
    deque and one timer release them, every connection due within GRAIN_S at once (one wake-up
    of the event loop for many)."""

    GRAIN_S = 0.002
    ADAPT_S = 0.1
    ROOM_BATCH = 4  # connections read at a time when a queue has room again
    ROOM_SCAN = 256  # paused connections looked at for them, from the last paused

    def __init__(
        self, min_pause_s: float, max_pause_s: float, loop_share: float, discard_bytes_s: float = 32 << 20
    ) -> None:
        self.min_pause_s = min_pause_s
        self.max_pause_s = max(min_pause_s, max_pause_s)
        self.loop_share = loop_share
        self.discard_bytes_s = discard_bytes_s
        self.pause_s = min_pause_s
        # (due, connection, the queue that refused it: None when the application did)
        self._paused: deque[tuple[float, DoorProtocol, Batcher | None]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._adapting: asyncio.TimerHandle | None = None
        self._paused_since_adapt = 0
        self._discarded = 0  # bytes of refused bodies read and dropped since the last look
        self._cpu = self._wall = 0.0

    def pause(self, connection: DoorProtocol, refused_by: Batcher | None = None) -> None:
        if self.min_pause_s <= 0 or connection.transport.is_closing():
            return
        loop = connection.loop
        connection.flow.pause_reading()
        now = loop.time()
        due = now + self.pause_s
        if self._paused and due < self._paused[-1][0]:  # the pause just shrank: keep the order
            due = self._paused[-1][0]
        self._paused.append((due, connection, refused_by))
        self._paused_since_adapt += 1
        if self._timer is None:
            self._timer = loop.call_at(due, self._release, loop)
        if self._adapting is None:
            self._cpu, self._wall, self._discarded = time.thread_time(), now, 0
            self._adapting = loop.call_at(now + self.ADAPT_S, self._adapt, loop)

    def discarded(self, size: int) -> None:
        """Bytes of a refused request's body read and dropped: moving them costs the client, the
        kernel and the event loop, most of it outside the event loop's own CPU time."""
        self._discarded += size

    def room(self, batcher: Batcher) -> None:
        """A shedding queue takes work again: read the connections it refused last (their requests
        have waited least; those refused by another queue, or by the application, stay paused), a
        few at a time, for as long as it does, rather than wait for pauses to end; a request let in
        this way waits in the queue, not in its socket."""
        released: list[DoorProtocol] = []
        kept: list[tuple[float, DoorProtocol, Batcher | None]] = []
        while self._paused and len(released) < self.ROOM_BATCH and len(kept) < self.ROOM_SCAN:
            entry = self._paused.pop()
            if entry[2] is not batcher:
                kept.append(entry)
            elif not entry[1].transport.is_closing():
                released.append(entry[1])
        self._paused.extend(reversed(kept))
        for connection in released:
            connection.flow.resume_reading()
        if released and self._paused:
            # their requests are read in the next turn of the event loop; then, if there is room still
            released[0].loop.call_later(self.GRAIN_S, self._room_left, batcher)

    def _room_left(self, batcher: Batcher) -> None:
        if not batcher.shedding:
            self.room(batcher)

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        until = loop.time() + self.GRAIN_S
        while self._paused and self._paused[0][0] <= until:
            _, connection, _ = self._paused.popleft()
            if not connection.transport.is_closing():
                connection.flow.resume_reading()
        if self._paused:
            self._timer = loop.call_at(self._paused[0][0], self._release, loop)

    def _adapt(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the event loop (its thread's CPU time is the one read)."""
        cpu, wall = time.thread_time(), loop.time()
        elapsed = max(wall - self._wall, 1e-6)
        busy, discarding = (cpu - self._cpu) / elapsed, self._discarded / elapsed
        self._cpu, self._wall, self._discarded = cpu, wall, 0
        if self._paused_since_adapt == 0 and not self._paused:  # none paced in a period: the burst is over
            self._adapting = None
            self.pause_s = self.min_pause_s
            return
        self._paused_since_adapt = 0
        if busy > self.loop_share or discarding > self.discard_bytes_s:
            self.pause_s = min(self.max_pause_s, self.pause_s * 1.25)
        elif busy < self.loop_share / 2 and discarding < self.discard_bytes_s / 2:
            self.pause_s = max(self.min_pause_s, self.pause_s * 0.8)
        # The next look once a pause of the new length has passed: only then does it show.
        self._adapting = loop.call_at(wall + max(self.ADAPT_S, self.pause_s), self._adapt, loop)


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
            models = request.screen.targets(request.query, bytes(request.body))
        except (ServiceError, ValueError):  # unreadable, unknown model, ...: the application says so
            return None
        if not models or not all(model.batcher.shedding for model in models):
            return None
        request.refused_by = models[0].batcher
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


class Screening:
    """A request the door is looking at: uvicorn has not seen it past its headers."""

    __slots__ = (
        "body",
        "client",
        "close",
        "complete",
        "declared",
        "expect_100",
        "headers",
        "path",
        "previous",
        "query",
        "refused",
        "refused_by",
        "retry_after",
        "screen",
        "started",
    )

    def __init__(
        self,
        screen: Screen,
        path: str,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        client: tuple[str, int] | None,
        previous: Any,
        close: bool,
        expect_100: bool,
    ) -> None:
        self.screen = screen
        self.path = path
        self.query = query
        self.headers = headers
        self.client = client
        self.previous = previous  # uvicorn's cycle of the connection's request before (None, or answered)
        self.close = close  # the answer closes the connection (Expect: 100-continue, Connection: close, 1.0)
        self.expect_100 = expect_100
        self.started = time.perf_counter()
        self.body = bytearray()
        self.complete = False  # the whole body is in
        self.refused = False  # answered: the rest of the body is dropped unread
        self.refused_by: Batcher | None = None  # the queue whose refusal it was
        self.retry_after = 0  # the refusal's Retry-After, in seconds
        self.declared = -1  # its Content-Length (-1: none given)
        for name, value in headers:
            if name == b"content-length" and value.isdigit():
                self.declared = int(value)


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
