"""Slow and stalled clients: uvicorn's HTTP protocol with time limits on each phase of a connection.

A client that never finishes its headers never reaches the application, and one that stops reading
leaves its response in the transport's buffer after the application is done with it: only the
protocol sees either, so the limits live here and not in ASGI middleware. The protocol only stores
timestamps (GuardedHttpToolsProtocol); one timer per server every `tick` seconds closes the
connections over a limit (ConnectionGuard). What it relies on in uvicorn, and the check that it is
still there, are in service.transport.uvicorn_internals.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from service.metrics import ServiceMetrics
from service.transport.uvicorn_internals import HttpToolsProtocol, RequestResponseCycle, check_uvicorn

log = logging.getLogger("gan.connections")

TIMED_OUT = "timed_out"  # key in the request's ASGI state: the guard closed the connection mid-request


class Phase(enum.Enum):
    HEADERS = "headers"  # connected, or a request begun, headers not complete
    BODY = "body"  # headers complete, the body not yet
    IDLE = "idle"  # between requests (uvicorn's keep-alive timeout applies) or the request is read


@dataclass(frozen=True)
class ConnectionLimits:
    """A request's headers must come within header_timeout_s of the connection (or of the
    request's first byte), its body within body_timeout_s and a second per min_body_rate bytes
    received (a steady upload goes on, a trickle does not); a response the client does not read
    for write_timeout_s is dropped with the connection."""

    header_timeout_s: float
    body_timeout_s: float
    min_body_rate: float  # bytes per second
    write_timeout_s: float

    @property
    def tick(self) -> float:
        """How often the connections are checked: a limit is enforced at most this late."""
        shortest = min(self.header_timeout_s, self.body_timeout_s, self.write_timeout_s)
        return max(0.05, min(1.0, shortest / 4))


class ConnectionGuard:
    """The open connections of one server, and the timer that closes those over a limit."""

    def __init__(self, limits: ConnectionLimits, metrics: ServiceMetrics | None = None) -> None:
        check_uvicorn()
        self.limits = limits
        self.connections: set[GuardedHttpToolsProtocol] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._open = metrics.connections_open if metrics is not None else None
        self._closed = (
            {reason: metrics.connections_closed.labels(reason) for reason in CLOSE_REASONS}
            if metrics is not None
            else {}
        )

    def protocol_class(self) -> type[HttpToolsProtocol]:
        """The protocol class for uvicorn.Config(http=...), bound to this guard."""
        return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"guard": self})

    def opened(self, connection: GuardedHttpToolsProtocol, loop: asyncio.AbstractEventLoop) -> None:
        self.connections.add(connection)
        if self._open is not None:
            self._open.inc()
        if self._timer is None:
            self._timer = loop.call_later(self.limits.tick, self._sweep, loop)

    def closed(self, connection: GuardedHttpToolsProtocol) -> None:
        if connection in self.connections:
            self.connections.remove(connection)
            if self._open is not None:
                self._open.dec()

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for connection in list(self.connections):
            reason = connection.overdue(now, self.limits)
            if reason is not None:
                connection.drop(reason)
                if reason in self._closed:
                    self._closed[reason].inc()
        self._timer = loop.call_later(self.limits.tick, self._sweep, loop)


CLOSE_REASONS = ("header_timeout", "body_timeout", "write_timeout")


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, keeping each request's phase and when it began for the guard's
    timer (the callbacks it overrides: service.transport.uvicorn_internals.HOOKS)."""

    guard: ClassVar[ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = Phase.HEADERS
        self._since = 0.0  # when the current phase began (loop time)
        self._received = 0  # body bytes of the current request
        self._stalled_since: float | None = None  # when writing last paused
        self._dropped = False
        # Every request of this connection not yet answered: with pipelining, uvicorn's self.cycle
        # is only the newest, and an older one may be the one writing.
        self._cycles: list[RequestResponseCycle] = []

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._since = self.loop.time()
        self.guard.opened(self, self.loop)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.closed(self)
        self._disconnect_cycles()  # uvicorn marks only the newest request as disconnected
        super().connection_lost(exc)

    def _disconnect_cycles(self, reason: str | None = None) -> None:
        for cycle in self._cycles:
            if not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
                if reason is not None:
                    cycle.scope["state"][TIMED_OUT] = reason
        self._cycles.clear()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._phase is Phase.IDLE:  # a new request on a kept-alive connection
            self._phase = Phase.HEADERS
            self._since = self.loop.time()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._cycles = [cycle for cycle in self._cycles if not cycle.response_complete]
        self._cycles.append(self.cycle)
        self.headers_received()

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._received += len(body)

    # The phases of a request, kept by the callbacks above, and by service.transport.door for the requests
    # it answers without uvicorn's part of them.

    def headers_received(self) -> None:
        self._phase = Phase.BODY
        self._since = self.loop.time()
        self._received = 0

    def body_received(self, size: int) -> None:
        self._received += size

    def request_received(self) -> None:
        self._phase = Phase.IDLE

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.request_received()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._stalled_since = self.loop.time()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._stalled_since = None

    def overdue(self, now: float, limits: ConnectionLimits) -> str | None:
        """The limit this connection is over, if any."""
        if self._stalled_since is not None and now - self._stalled_since > limits.write_timeout_s:
            return "write_timeout"
        if self._dropped or self._phase is Phase.IDLE:
            return None
        if self.flow is not None and self.flow.read_paused:
            self._since, self._received = now, 0  # the server is not reading: the client's clock restarts
            return None
        waited = now - self._since
        if self._phase is Phase.HEADERS and waited > limits.header_timeout_s:
            return "header_timeout"
        allowed_for_body = limits.body_timeout_s + self._received / limits.min_body_rate
        if self._phase is Phase.BODY and waited > allowed_for_body:
            return "body_timeout"
        return None

    def drop(self, reason: str) -> None:
        log.debug("closing the connection from %s: %s", self.client, reason)
        if reason == "write_timeout":
            self._stalled_since = None
            # Aborting empties the buffer, which resumes writing before connection_lost runs: a
            # response waiting to be written must already see the connection as gone.
            self._disconnect_cycles(reason)
            self.transport.abort()  # what is buffered will never be read: discard it
            return
        self._dropped = True
        cycle = self.cycle
        if self._phase is Phase.BODY and cycle is not None and not cycle.response_started:
            self.scope["state"][TIMED_OUT] = reason  # the access log and metrics say 408, not 499
        self.transport.close()  # a response still being written to the client is flushed first
