"""Slow and stalled clients: uvicorn's HTTP protocol with time limits on each phase of a connection.

A client that never finishes its headers never reaches the application, and a client that stops
reading leaves its response in the transport's buffer after the application is done with it: only
the protocol sees either, so the limits live here and not in ASGI middleware.

- headers: a connection must deliver a request's headers within header_timeout_s of opening (or,
  on a kept-alive connection, of the request's first byte);
- body: a request body must arrive within body_timeout_s plus one second per min_body_rate bytes
  received (the rule of Apache's mod_reqtimeout: a slow but steady upload goes on, a trickle that
  only holds the connection open does not);
- writing: a response the client does not read (the transport's buffer stays over its high-water
  mark) for write_timeout_s is dropped with the connection.

Time during which the server itself is not reading (a pipelined request waiting for the one before
it) does not count against the client. The connections are checked by one timer every `tick`
seconds rather than a timer per request: the hot path only stores a timestamp.

uvicorn internals. uvicorn has no public hook for any of this, so GuardedHttpToolsProtocol
subclasses its private HttpToolsProtocol: it overrides the callbacks in HOOKS; it reads the
protocol's loop, transport, flow (FlowControl.read_paused), client, scope and cycle, and of each
RequestResponseCycle its scope, disconnected, message_event, response_complete and
response_started. The door (service.transport.door) subclasses it in turn and reads, when a request's
headers are in, the protocol's url, headers, expect_100_continue and parser (method, HTTP
version, keep-alive), its server_state (default_headers, total_requests) and
timeout_keep_alive; after the application's 429 it cancels timeout_keep_alive_task (the timer
uvicorn arms once a response is complete) to keep the connection through its Retry-After. Any
uvicorn release may change them, so:

- pyproject.toml pins uvicorn to the release series this module is tested with (TESTED_UVICORN);
- uvicorn_mismatches() checks, without a server, that every one of them is still there and still
  behaves as relied on: the callbacks exist with the same parameters and the HTTP parser still
  calls them, the attributes are set and of the expected kind, a pipelined request pauses reading,
  and a cycle marked disconnected answers receive() with http.disconnect and writes nothing;
- gan-serve runs that check before anything else (check_uvicorn, also run by ConnectionGuard) and
  on a mismatch refuses to start, with one line naming what changed. Falling back to plain
  httptools instead would keep serving but silently drop the slow-client limits, a protection that
  nobody notices is gone until the connections run out; a refusal is seen at the first start (in
  CI, at a rollout's first replica) and its fix is plain: install the pinned uvicorn. A uvicorn
  outside the pinned series that passes the check starts, with a warning;
- tests/service/test_connection_guard.py runs the check (a failure lists what changed) and each
  limit on a real uvicorn server; tests/service/test_slow_clients.py does the same through the
  whole service.

To raise the pin: install the new uvicorn, read what changed in uvicorn/protocols/http/
(httptools_impl.py, flow_control.py), set TESTED_UVICORN and both uvicorn lines of pyproject.toml
(extras serve and gpu) to the new series, and run those two test files.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import functools
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from service.metrics import ServiceMetrics

log = logging.getLogger("gan.connections")

# The uvicorn release series this module is written and tested against: pyproject.toml requires
# uvicorn[standard]>=0.54,<0.55 (tests/service/test_connection_guard.py holds the two together).
TESTED_UVICORN = (0, 54)

# What GuardedHttpToolsProtocol relies on in uvicorn (see the module docstring).
HOOKS = {  # HttpToolsProtocol methods overridden here, with their parameters after self
    "connection_made": ("transport",),
    "connection_lost": ("exc",),
    "on_message_begin": (),
    "on_headers_complete": (),
    "on_body": ("body",),
    "on_message_complete": (),
    "pause_writing": (),
    "resume_writing": (),
    "on_response_complete": (),  # service.transport.door
    "shutdown": (),  # service.transport.door
}

TIMED_OUT = "timed_out"  # key in the request's ASGI state: the guard closed the connection mid-request


class Phase(enum.Enum):
    HEADERS = "headers"  # connected, or a request begun, headers not complete
    BODY = "body"  # headers complete, the body not yet
    IDLE = "idle"  # between requests (uvicorn's keep-alive timeout applies) or the request is read


@dataclass(frozen=True)
class ConnectionLimits:
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


# --- is uvicorn still what the guard was written against? -------------------------------------


class IncompatibleUvicorn(RuntimeError):
    """The installed uvicorn's internals differ from what GuardedHttpToolsProtocol relies on."""


def check_uvicorn() -> None:
    """Raise IncompatibleUvicorn (one line: what changed, what to install) when the installed
    uvicorn is not what this module relies on; warn once when it passes but is of an untested
    series. The check runs once per process."""
    problems, version = _checked()
    if problems:
        raise IncompatibleUvicorn(
            f"uvicorn {version} differs from what service.transport.connection_guard relies on: "
            + "; ".join(problems)
            + f"; install uvicorn[standard]>={_series(TESTED_UVICORN)},<{_series(_next(TESTED_UVICORN))} "
            "(pyproject.toml), or see service/transport/connection_guard.py on raising the pin"
        )


@functools.cache
def _checked() -> tuple[tuple[str, ...], str]:
    problems = tuple(uvicorn_mismatches())
    version = uvicorn.__version__
    if not problems and tuple(int(p) for p in version.split(".")[:2] if p.isdecimal()) != TESTED_UVICORN:
        log.warning(
            "uvicorn %s: the connection guard is tested with %s.x only (its checks pass)",
            version,
            _series(TESTED_UVICORN),
        )
    return problems, version


def _series(series: tuple[int, int]) -> str:
    return ".".join(map(str, series))


def _next(series: tuple[int, int]) -> tuple[int, int]:
    return series[0], series[1] + 1


def uvicorn_mismatches() -> list[str]:
    """How the installed uvicorn differs from what GuardedHttpToolsProtocol relies on; empty when
    it does not. First the overridden callbacks and their parameters, then a request pair fed
    through an HttpToolsProtocol on a transport that goes nowhere (no server, no socket)."""
    problems = []
    for name, parameters in HOOKS.items():
        method = getattr(HttpToolsProtocol, name, None)
        if not callable(method):
            problems.append(f"HttpToolsProtocol.{name} is gone")
            continue
        found = tuple(inspect.signature(method).parameters)[1:]
        if found != parameters:
            problems.append(
                f"HttpToolsProtocol.{name} takes ({', '.join(found)}), not ({', '.join(parameters)})"
            )
    if problems:
        return problems  # the probe would only stumble on the same
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _safe_probe()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # the probe runs a loop of its own
        return pool.submit(_safe_probe).result()


def _safe_probe() -> list[str]:
    try:
        return _probe()
    except Exception as e:
        return [f"a request fed through HttpToolsProtocol failed: {type(e).__name__}: {e}"]


class _NowhereTransport(asyncio.Transport):
    """Keeps what is written; reading can be paused; nothing is sent anywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.reading = True
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


async def _unused_app(scope: Any, receive: Any, send: Any) -> None:  # the probe cancels its tasks unrun
    raise AssertionError("the probe's application ran")


def _probe() -> list[str]:
    called: list[str] = []
    cycles: list[Any] = []
    bodies: list[bytes] = []
    heads: list[tuple[Any, ...]] = []

    def recording(name: str) -> Callable[..., None]:
        def hook(self: HttpToolsProtocol, *args: Any) -> None:
            called.append(name)
            if name == "on_headers_complete":  # what service.transport.door reads before uvicorn's own part
                parser = self.parser
                heads.append(
                    (
                        self.url,
                        list(self.headers),
                        self.expect_100_continue,
                        parser.get_method(),
                        parser.get_http_version(),
                        parser.should_keep_alive(),
                    )
                )
            getattr(HttpToolsProtocol, name)(self, *args)
            if name == "on_headers_complete":
                cycles.append(self.cycle)
            elif name == "on_body":
                bodies.append(bytes(args[0]))

        return hook

    probe_class = type("ProbeHttpToolsProtocol", (HttpToolsProtocol,), {n: recording(n) for n in HOOKS})
    loop = asyncio.new_event_loop()
    state = ServerState()
    try:
        config = uvicorn.Config(_unused_app, log_config=None, ws="none", lifespan="off")
        protocol = probe_class(config=config, server_state=state, app_state={"probe": 1}, _loop=loop)
        transport = _NowhereTransport()
        protocol.connection_made(transport)
        problems = _misfits(
            "HttpToolsProtocol",
            protocol,
            loop=lambda v: v is loop,
            transport=lambda v: v is transport,
            flow=lambda v: isinstance(getattr(v, "read_paused", None), bool),
            client=lambda v: v is None or isinstance(v, tuple),
        )
        if problems:
            return problems
        first = b"POST /a HTTP/1.1\r\nHost: probe\r\nContent-Length: 4\r\n\r\nbody"
        protocol.data_received(first + b"GET /b HTTP/1.1\r\nHost: probe\r\n\r\n")  # pipelined
        for task in state.tasks:
            task.cancel()  # before it ever runs: the application is not called
        expected_calls = [
            "connection_made",
            *("on_message_begin", "on_headers_complete", "on_body", "on_message_complete"),
            *("on_message_begin", "on_headers_complete", "on_message_complete"),
        ]
        if called != expected_calls:
            problems.append(f"the HTTP parser calls {called}, not {expected_calls}")
        if bodies != [b"body"]:
            problems.append(f"on_body received {bodies}, not [b'body']")
        first_head = (b"/a", [(b"host", b"probe"), (b"content-length", b"4")], False, b"POST", "1.1", True)
        if heads[:1] != [first_head]:
            problems.append(
                f"at on_headers_complete, (url, headers, expect_100_continue, method, HTTP version, "
                f"keep-alive) are {heads[:1]}, not [{first_head}]"
            )
        problems += _misfits(
            "HttpToolsProtocol",
            protocol,
            timeout_keep_alive=lambda v: isinstance(v, int | float),
            timeout_keep_alive_task=lambda v: v is None or isinstance(v, asyncio.TimerHandle),
            server_state=lambda v: (
                isinstance(getattr(v, "default_headers", None), list)
                and isinstance(getattr(v, "total_requests", None), int)
            ),
        )
        problems += _misfits(
            "HttpToolsProtocol",
            protocol,
            scope=lambda v: isinstance(v, dict) and v.get("state") == {"probe": 1},
            cycle=lambda v: isinstance(v, RequestResponseCycle),
        )
        if problems or len(cycles) != 2:
            return problems or [f"{len(cycles)} requests parsed, not 2"]
        first_cycle = cycles[0]
        problems += _misfits(
            "RequestResponseCycle",
            first_cycle,
            scope=lambda v: (
                isinstance(v, dict) and v.get("path") == "/a" and isinstance(v.get("state"), dict)
            ),
            disconnected=lambda v: v is False,
            message_event=lambda v: isinstance(v, asyncio.Event),
            response_complete=lambda v: v is False,
            response_started=lambda v: v is False,
        )
        if problems:
            return problems
        if not protocol.flow.read_paused or transport.reading:
            problems.append("a pipelined request no longer pauses reading (flow.read_paused)")
        if protocol.scope is not protocol.cycle.scope:
            problems.append("HttpToolsProtocol.scope is no longer the newest request's")
        protocol.pause_writing()
        protocol.resume_writing()
        # What _disconnect_cycles does to a request must end it, for the application, at once.
        first_cycle.disconnected = True
        first_cycle.message_event.set()
        message = loop.run_until_complete(first_cycle.receive())
        if message != {"type": "http.disconnect"}:
            problems.append(f"a cycle marked disconnected answers receive() with {message}")
        loop.run_until_complete(first_cycle.send({"type": "http.response.start", "status": 200}))
        if transport.written:
            problems.append("a cycle marked disconnected still writes its response")
        protocol.connection_lost(None)
    finally:
        if state.tasks:
            for task in state.tasks:
                task.cancel()
            loop.run_until_complete(asyncio.wait(list(state.tasks)))
        loop.close()
    return problems


def _misfits(owner_name: str, owner: object, **fits: Callable[[Any], bool]) -> list[str]:
    """The attributes of `owner` that are missing, or fail their check."""
    problems = []
    for name, fit in fits.items():
        if not hasattr(owner, name):
            problems.append(f"{owner_name}.{name} is gone")
        elif not fit(getattr(owner, name)):
            problems.append(f"{owner_name}.{name} is {getattr(owner, name)!r}, not of the expected kind")
    return problems
