"""gan-serve on a real server process: a port in use stops it before any model loads, port 0
picks one; at shutdown a fractional graceful timeout is honoured, and signals during the drain
period. Each shutdown test holds a request in flight by sending its body only when the test says
so: how long the request lasts does not depend on the machine's speed. Loopback only; every
socket has a timeout."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import httpx

from service.transport.listener import listen
from tests.live_server import REPO, TEST_ENV, Server, model_subset

BODY = json.dumps({"model": "digits", "n": 1, "seed": 1}).encode()
HEAD = (
    b"POST /generate HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    % len(BODY)
)


def begin_request(srv: Server) -> socket.socket:
    """A /generate request whose headers and first bytes are sent, the rest held back."""
    parsed = urlparse(srv.url)
    sock = socket.create_connection((parsed.hostname, parsed.port), timeout=30)
    sock.sendall(HEAD + BODY[:5])
    return sock


def finish_request(sock: socket.socket) -> bytes:
    """Sends the rest of the body; what comes back until the server closes the connection."""
    answer = b""
    try:
        sock.sendall(BODY[5:])
        while chunk := sock.recv(65536):
            answer += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        sock.close()
    return answer


def wait_for(condition: Callable[[], bool], what: str, srv: Server, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}\n{srv.log()}"
        time.sleep(0.02)


def in_flight(srv: Server, count: int) -> None:
    wait_for(lambda: srv.metric("gan_requests_in_flight", endpoint="/generate") == count, "in flight", srv)


def logged(srv: Server, text: str) -> None:
    wait_for(lambda: text in srv.log(), repr(text), srv)


def test_a_fractional_graceful_timeout_is_honoured(make_server: Callable[..., Server]) -> None:
    """GAN_SERVE_GRACEFUL_TIMEOUT_S=0.5 gives requests in flight at shutdown 0.5 s, not 0 (which
    cancels them at once) nor forever: the one finished in time is answered, the other cut."""
    srv = make_server(["digits"], graceful_timeout_s=0.5)
    on_time, never = begin_request(srv), begin_request(srv)
    in_flight(srv, 2)
    srv.process.send_signal(signal.SIGTERM)
    logged(srv, "Shutting down")  # then 0.1 s before the graceful timeout starts
    # Long enough that with a timeout of 0 the requests are gone; well within 0.5 s.
    deadline = time.monotonic() + 0.25
    while time.monotonic() < deadline and "running task(s)" not in srv.log():
        time.sleep(0.01)
    answer = finish_request(on_time)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300] + srv.log().encode()
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["images"][0]["seed"] == 1
    # The other never sends its body: it is cut when the 0.5 s are up, and the server exits.
    assert srv.process.wait(30) == -signal.SIGTERM
    never.close()
    assert "Cancel 1 running task(s), timeout graceful shutdown exceeded" in srv.log()


def test_a_second_signal_while_draining_shuts_down_gracefully(make_server: Callable[..., Server]) -> None:
    """Ctrl-C, then Ctrl-C again before the drain period is over: the listener closes now and the
    request in flight is still answered, also after the drain period would have ended."""
    srv = make_server(["digits"], drain_seconds=1)
    sock = begin_request(srv)
    in_flight(srv, 1)
    first = time.monotonic()
    srv.process.send_signal(signal.SIGINT)
    logged(srv, "draining (not ready)")
    srv.process.send_signal(signal.SIGINT)
    logged(srv, "Shutting down")
    # Past the end of the drain period: a timer left armed would now force the exit.
    time.sleep(max(0.0, first + 1.5 - time.monotonic()))
    assert srv.process.poll() is None, srv.log()
    answer = finish_request(sock)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300] + srv.log().encode()
    assert srv.process.wait(30) == -signal.SIGINT  # uvicorn re-raises the signal after a graceful shutdown
    log = srv.log()
    assert log.count("Shutting down") == 1 and "Application shutdown complete" in log
    assert "closing now, before the drain period is over" in log


def test_a_third_signal_forces_the_exit(make_server: Callable[..., Server]) -> None:
    """As with uvicorn alone: once the graceful shutdown has begun, Ctrl-C ends the process without
    waiting for the request in flight (the graceful timeout is 30 s)."""
    srv = make_server(["digits"], drain_seconds=5)
    sock = begin_request(srv)
    in_flight(srv, 1)
    srv.process.send_signal(signal.SIGINT)
    logged(srv, "draining (not ready)")
    srv.process.send_signal(signal.SIGINT)
    logged(srv, "Waiting for connections to close")
    srv.process.send_signal(signal.SIGINT)
    assert srv.process.wait(10) == -signal.SIGINT
    assert not finish_request(sock).startswith(b"HTTP/1.1 200")


def test_a_port_in_use_stops_it_at_once_before_any_model_loads() -> None:
    """Exit 2 with one line naming the address, as for other bad settings; not exit 3 with
    uvicorn's bind error after every model was loaded and warmed up."""
    with socket.socket() as holder:  # another server's listener, as far as the kernel knows
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "service", "--models", str(REPO / "models"), "--port", str(port)],
            cwd=REPO,
            env={**os.environ, **TEST_ENV},
            capture_output=True,
            text=True,
            timeout=120,  # a bound, not a measure: loading every model would log "warmed up" anyway
        )
    assert out.returncode == 2, out.stderr
    # stderr is the whole log too: one line means no model was loaded.
    assert "warmed up" not in out.stderr
    assert out.stderr.splitlines() == [
        f"gan-serve: error: cannot listen on 127.0.0.1:{port}: address already in use "
        "(is another server running? stop it or pass --port)"
    ]


def test_port_0_on_every_interface_is_one_free_port_for_all() -> None:
    """An empty host is every address, IPv4 and (where the machine has it) IPv6: one socket
    each, all on the same port, already listening (no other server can take it)."""
    sockets = listen("", 0, 16)
    try:
        assert len({sock.getsockname()[1] for sock in sockets}) == 1
        with socket.create_connection(("127.0.0.1", sockets[0].getsockname()[1]), timeout=10):
            pass  # accepted by the kernel: the socket listens
    finally:
        for sock in sockets:
            sock.close()


def test_port_0_serves_on_the_free_port_it_logs(tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    models = model_subset(tmp_path, ["digits"])
    argv = [sys.executable, "-m", "service", "--models", str(models), "--port", "0"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, cwd=REPO, env={**os.environ, **TEST_ENV}, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        running = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+) ")
        deadline = time.monotonic() + 120
        while not (found := running.search(log_path.read_text(errors="replace"))):
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        port = int(found[1])
        assert port != 0
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=30).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGTERM, log_path.read_text()
