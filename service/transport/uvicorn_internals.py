"""What the service relies on inside uvicorn, and the check that the installed uvicorn still has it.

This is the one module that imports uvicorn's private modules (uvicorn.protocols.http): the slow-
client guard (service.transport.connection_guard) and the door (service.transport.door) subclass
HttpToolsProtocol from here. Any uvicorn release may change what they rely on, so uvicorn is pinned
to the series tested (TESTED_UVICORN), and gan-serve refuses to start, naming what changed, when
uvicorn_mismatches() finds a difference. How to raise the pin: beside TESTED_UVICORN.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

__all__ = [
    "HOOKS",
    "TESTED_UVICORN",
    "HttpToolsProtocol",
    "IncompatibleUvicorn",
    "RequestResponseCycle",
    "check_uvicorn",
    "uvicorn_mismatches",
]

log = logging.getLogger("gan.connections")

# The uvicorn release series the guard and the door are written and tested against: pyproject.toml
# requires uvicorn[standard]>=0.54,<0.55 (tests/service/test_connection_guard.py holds the two together).
# To raise it: install the new uvicorn, read what changed in uvicorn/protocols/http/
# (httptools_impl.py, flow_control.py), set this and both uvicorn lines of pyproject.toml (extras
# serve and gpu) to the new series, and run tests/service/test_connection_guard.py and
# tests/service/test_slow_clients.py.
TESTED_UVICORN = (0, 54)

# HttpToolsProtocol methods the guard and the door override, with their parameters after self.
HOOKS = {
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


class IncompatibleUvicorn(RuntimeError):
    """The installed uvicorn's internals differ from what the guard and the door rely on."""


def check_uvicorn() -> None:
    """Raise IncompatibleUvicorn (one line: what changed, what to install) when the installed
    uvicorn is not what this module relies on; warn once when it passes but is of an untested
    series. The check runs once per process."""
    problems, version = _checked()
    if problems:
        raise IncompatibleUvicorn(
            f"uvicorn {version} differs from what the connection guard and the door rely on: "
            + "; ".join(problems)
            + f"; install uvicorn[standard]>={_series(TESTED_UVICORN)},<{_series(_next(TESTED_UVICORN))} "
            "(pyproject.toml), or see service/transport/uvicorn_internals.py on raising the pin"
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
    """How the installed uvicorn differs from what the guard and the door rely on; empty when
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
