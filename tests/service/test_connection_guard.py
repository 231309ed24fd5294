"""service.transport.connection_guard against the uvicorn it is installed with: the internals it
relies on (service.transport.uvicorn_internals) are still there (a failure names what changed),
the pin in pyproject.toml is the series it is tested with, gan-serve refuses to start on a
mismatch, and each limit holds on a real uvicorn server (in this process, a bare ASGI
application: no models). Loopback only; every socket has a timeout."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httptools
import pytest
import uvicorn
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from service.metrics import ServiceMetrics
from service.transport import uvicorn_internals
from service.transport.connection_guard import TIMED_OUT, ConnectionGuard, ConnectionLimits
from service.transport.uvicorn_internals import (
    TESTED_UVICORN,
    IncompatibleUvicorn,
    check_uvicorn,
    uvicorn_mismatches,
)

REPO = Path(__file__).resolve().parents[2]


# --- the internals ------------------------------------------------------------------------------


def test_uvicorn_is_what_the_guard_relies_on() -> None:
    problems = uvicorn_mismatches()
    assert not problems, (
        f"uvicorn {uvicorn.__version__} changed what service.transport.uvicorn_internals relies on:\n  "
        + "\n  ".join(problems)
    )
    check_uvicorn()


def test_the_check_runs_inside_an_event_loop_too() -> None:
    """The probe runs an event loop of its own: inside a running one, it runs in another thread."""

    async def check() -> list[str]:
        return uvicorn_mismatches()

    assert asyncio.run(check()) == []


def test_pyproject_pins_the_tested_uvicorn_series() -> None:
    """Both extras that install the service require the series the guard is tested with, and that
    is the series installed here."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    major, minor = TESTED_UVICORN
    for extra in ("serve", "gpu"):
        pins = [r for r in extras[extra] if re.match(r"uvicorn\b", r)]
        assert pins == [f"uvicorn[standard]>={major}.{minor},<{major}.{minor + 1}"], extra
    installed = tuple(int(p) for p in uvicorn.__version__.split(".")[:2])
    assert installed == TESTED_UVICORN, (
        f"uvicorn {uvicorn.__version__} is installed; the pin says {major}.{minor}"
    )


def _without_read_pause(self: FlowControl) -> None:
    pass


async def _ignores_disconnect(self: RequestResponseCycle) -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def _without_client(self: HttpToolsProtocol, transport: asyncio.Transport) -> None:
    _CONNECTION_MADE(self, transport)
    del self.client


_CONNECTION_MADE = HttpToolsProtocol.connection_made


class _ParserWithout:
    """httptools' parser, given a protocol that hides some callbacks (as if renamed)."""

    def __init__(self, hidden: str) -> None:
        self.hidden = hidden

    def __call__(self, protocol: object) -> object:
        hidden = self.hidden

        class Hiding:
            def __getattr__(self, name: str) -> object:
                if name == hidden:
                    raise AttributeError(name)
                return getattr(protocol, name)

        return _PARSER(Hiding())


_PARSER = httptools.HttpRequestParser


# (what is changed, how, a part of what the check must say)
CHANGES: list[tuple[str, Callable[[pytest.MonkeyPatch], None], str]] = [
    (
        "a callback removed",
        lambda m: m.delattr(HttpToolsProtocol, "on_body"),
        "HttpToolsProtocol.on_body is gone",
    ),
    (
        "a callback's parameters",
        lambda m: m.setattr(HttpToolsProtocol, "on_body", lambda self, data, more: None),
        "HttpToolsProtocol.on_body takes (data, more), not (body)",
    ),
    (
        "a callback the parser no longer calls",
        lambda m: m.setattr(httptools_impl.httptools, "HttpRequestParser", _ParserWithout("on_body")),
        "on_body received [], not [b'body']",
    ),
    (
        "an attribute no longer set",
        lambda m: m.setattr(HttpToolsProtocol, "connection_made", _without_client),
        "HttpToolsProtocol.client is gone",
    ),
    (
        "reading no longer paused behind a pipelined request",
        lambda m: m.setattr(FlowControl, "pause_reading", _without_read_pause),
        "a pipelined request no longer pauses reading",
    ),
    (
        "a disconnected cycle that still reads",
        lambda m: m.setattr(RequestResponseCycle, "receive", _ignores_disconnect),
        "a cycle marked disconnected answers receive() with {'type': 'http.request'",
    ),
]


@pytest.mark.parametrize(("change", "expected"), [(c[1], c[2]) for c in CHANGES], ids=[c[0] for c in CHANGES])
def test_a_changed_uvicorn_is_named(
    monkeypatch: pytest.MonkeyPatch, change: Callable[[pytest.MonkeyPatch], None], expected: str
) -> None:
    change(monkeypatch)
    problems = uvicorn_mismatches()
    assert any(expected in p for p in problems), problems


@pytest.fixture
def fresh_check() -> Iterator[None]:
    uvicorn_internals._checked.cache_clear()
    yield
    uvicorn_internals._checked.cache_clear()


def test_gan_serve_refuses_to_start_on_a_changed_uvicorn(
    monkeypatch: pytest.MonkeyPatch, fresh_check: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from service import cli

    mismatches = ["HttpToolsProtocol.on_body is gone"]
    monkeypatch.setattr(uvicorn_internals, "uvicorn_mismatches", lambda: mismatches)
    with pytest.raises(IncompatibleUvicorn):
        ConnectionGuard(ConnectionLimits(1, 1, 1, 1))
    assert cli.main(["--models", str(tmp_path), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert "HttpToolsProtocol.on_body is gone" in err
    major, minor = TESTED_UVICORN
    assert f"install uvicorn[standard]>={major}.{minor},<{major}.{minor + 1}" in err


# --- each limit on a real uvicorn server ---------------------------------------------------------

LIMITS = ConnectionLimits(header_timeout_s=0.3, body_timeout_s=0.3, min_body_rate=1000, write_timeout_s=0.3)
CHUNK = 128 * 1024
CHUNKS = 512  # 64 MiB: more than any socket buffers hold


@dataclass
class GuardedServer:
    port: int
    metrics: ServiceMetrics
    events: list[tuple[str, object]] = field(default_factory=list)  # (path, what the app saw)

    def closed(self, reason: str) -> float:
        return self.metrics.registry.get_sample_value("gan_connections_closed_total", {"reason": reason}) or 0

    def open(self) -> float:
        return self.metrics.registry.get_sample_value("gan_connections_open") or 0

    def connect(self, receive_buffer: int | None = None) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # before connecting, so the window stays small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", self.port))
        return sock


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.02)


def closed_by_server(sock: socket.socket) -> bytes:
    """Reads until the server closes the connection; what was read. Fails on the timeout."""
    data = b""
    try:
        while chunk := sock.recv(1 << 20):
            data += chunk
    except ConnectionResetError:  # aborted with unread data in flight
        pass
    finally:
        sock.close()
    return data


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length, status 200."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536) or b"<closed>"
        assert not data.endswith(b"<closed>"), data
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data
    length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE)[1])  # type: ignore[index]
    while len(body) < length:
        body += sock.recv(65536) or b"<closed>"
        assert not body.endswith(b"<closed>"), data + body
    return head + b"\r\n\r\n" + body


def make_app(events: list[tuple[str, object]]) -> Callable[..., Any]:
    async def respond(send: Callable[..., Any], text: bytes) -> None:
        headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(text)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": text})

    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        path = scope["path"]
        if path == "/slow":  # answers after a while, as the model would
            await asyncio.sleep(float(scope["query_string"] or 1))
            await respond(send, b"slow")
        elif path == "/upload":
            received = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    events.append((path, scope["state"].get(TIMED_OUT)))
                    return
                received += len(message["body"])
                if not message["more_body"]:
                    break
            await respond(send, b"%d" % received)
        elif path == "/stream":  # far more than the socket buffers hold
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for _ in range(CHUNKS):
                await send({"type": "http.response.body", "body": b"x" * CHUNK, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            events.append((path, scope["state"].get(TIMED_OUT)))  # every send returned
        else:
            await respond(send, b"ok")

    return app


@contextmanager
def guarded_server(limits: ConnectionLimits = LIMITS) -> Iterator[GuardedServer]:
    metrics = ServiceMetrics()
    events: list[tuple[str, object]] = []
    config = uvicorn.Config(
        make_app(events),
        http=ConnectionGuard(limits, metrics).protocol_class(),
        ws="none",
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, "the server started")
        yield GuardedServer(listener.getsockname()[1], metrics, events)
    finally:
        server.should_exit = True
        thread.join(30)
        listener.close()


def test_headers_not_complete_in_time_close_the_connection() -> None:
    with guarded_server() as srv:
        idle = srv.connect()
        partial = srv.connect()
        partial.sendall(b"GET / HTTP/1.1\r\nHost: te")
        kept_alive = srv.connect()
        kept_alive.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        assert kept_alive.recv(65536).startswith(b"HTTP/1.1 200")
        kept_alive.sendall(b"GET / HTTP/1.1\r\n")  # a second request begun, never finished
        for sock in (idle, partial, kept_alive):
            assert closed_by_server(sock) == b""
        wait_until(lambda: srv.closed("header_timeout") == 3, "three header timeouts counted")
        wait_until(lambda: srv.open() == 0, "every connection let go")
        assert srv.closed("body_timeout") == srv.closed("write_timeout") == 0


def test_a_body_trickle_is_cut_off_and_the_application_told_why() -> None:
    with guarded_server() as srv:
        sock = srv.connect()
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\n{")
        assert closed_by_server(sock) == b""
        wait_until(lambda: srv.closed("body_timeout") == 1, "a body timeout counted")
        wait_until(lambda: srv.events == [("/upload", "body_timeout")], "the application saw it")


def test_a_slow_but_steady_upload_is_served() -> None:
    with guarded_server() as srv:
        sock = srv.connect()
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 1800\r\n\r\n")
        for _ in range(6):  # 300 bytes every 0.1 s: 0.6 s in all, over body_timeout_s, at 3,000 bytes/s
            sock.sendall(b"x" * 300)
            time.sleep(0.1)
        answer = sock.recv(65536)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"1800"), answer
        assert srv.closed("body_timeout") == 0


def test_time_spent_behind_a_pipelined_request_does_not_count() -> None:
    """The server does not read the second request while it answers the first (slower than every
    limit): that is not the client's doing."""
    with guarded_server() as srv:
        sock = srv.connect()
        sock.sendall(
            b"GET /slow?1 HTTP/1.1\r\nHost: test\r\n\r\n"
            b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n\r\nab"
        )
        # After 1 s, over every limit since the second request's headers were sent.
        assert read_response(sock).endswith(b"slow")
        sock.sendall(b"cd")  # the second request's clock starts when the server reads it again
        assert read_response(sock).endswith(b"4")
        sock.close()
        assert srv.closed("header_timeout") == srv.closed("body_timeout") == 0


def test_a_client_that_stops_reading_is_dropped_and_the_application_let_go() -> None:
    with guarded_server() as srv:
        sock = srv.connect(receive_buffer=4096)
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: test\r\n\r\n")
        # Nothing is read before the server gives up: reading would let it write again.
        wait_until(lambda: srv.closed("write_timeout") == 1, "a write timeout counted")
        closed_by_server(sock)
        # The application's pending send returned at once: the connection is gone.
        wait_until(lambda: srv.events == [("/stream", "write_timeout")], "the application finished")
        wait_until(lambda: srv.open() == 0, "the connection let go")
