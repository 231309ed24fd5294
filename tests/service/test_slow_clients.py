"""Slow uploaders, clients that never finish their headers, and clients that stop reading, on a real
server (service.transport.connection_guard). They must not keep others from being served, and the server
must let go of them: the connection is closed, counted in gan_connections_closed_total, and a request
cut off mid-body is logged as 408. Loopback only; every socket has a timeout."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
from PIL import Image

from tests.live_server import Server

UPSCALE_HEAD = (
    b"POST /upscale HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n"
)
GENERATE_HEAD = (
    b"POST /generate HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
)


def connect(srv: Server, receive_buffer: int | None = None) -> socket.socket:
    parsed = urlparse(srv.url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:  # set before connecting, so the window stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(30)
    sock.connect((parsed.hostname, parsed.port))
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Reads (and discards) until the server closes the connection: True, or the timeout: False."""
    try:
        while sock.recv(1 << 20):
            pass
        return True
    except ConnectionResetError:  # aborted with unread data in flight
        return True
    except TimeoutError:
        return False
    finally:
        sock.close()


def send_buffer_max() -> int:
    """The most a TCP socket's send buffer grows to by itself (Linux: tcp_wmem's third field)."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 4 << 20  # Linux's default


def non_reader(srv: Server) -> socket.socket:
    """A client that pipelines far more answers than the socket buffers hold, and reads none: the
    server's send buffer (which grows on its own up to send_buffer_max) fills, then the transport's
    buffer passes its high-water mark (64 KiB) and writing pauses."""
    answer = len(httpx.get(f"{srv.url}/openapi.json", timeout=30).content)
    count = max(2000, 2 * (send_buffer_max() + (1 << 20)) // answer)
    sock = connect(srv, receive_buffer=4096)
    sock.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: test\r\n\r\n" * count)
    return sock


def wait_for(condition: Callable[[], bool], what: str, srv: Server, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}\n{srv.log()}"
        time.sleep(0.05)


def cut_off(srv: Server) -> dict[str, int]:
    """{path: status} of the POST requests in the access log."""
    lines = [line.split("gan.access ", 1)[1] for line in srv.log().splitlines() if "gan.access" in line]
    return {e["path"]: e["status"] for e in map(json.loads, lines) if e["method"] == "POST"}


def png_bytes(width: int, height: int) -> bytes:
    pixels = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


async def normal_requests(url: str, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30) as client:
        return await asyncio.gather(
            *(
                client.post(f"{url}/generate", json={"model": "digits", "n": 4, "seed": i})
                for i in range(count)
            )
        )


def test_slow_and_stalled_clients_do_not_hold_up_others(make_server: Callable[..., Server]) -> None:
    srv = make_server(["digits", "srresnet-x2"])  # the default limits: seconds, far longer than the test
    idle = [connect(srv) for _ in range(30)]
    partial_headers = [connect(srv) for _ in range(30)]
    for sock in partial_headers:
        sock.sendall(b"POST /generate HTTP/1.1\r\nHost: test\r\nContent-")
    trickling = [connect(srv) for _ in range(30)]
    for sock in trickling:
        sock.sendall(GENERATE_HEAD % 1000 + b'{"model": ')
    uploads = [connect(srv) for _ in range(10)]
    for sock in uploads:
        sock.sendall(UPSCALE_HEAD % 50000 + png_bytes(32, 32)[:100])
    readers = [non_reader(srv) for _ in range(10)]
    held = idle + partial_headers + trickling + uploads + readers

    responses = asyncio.run(normal_requests(srv.url, 32))
    assert [r.status_code for r in responses] == [200] * 32
    assert all(len(r.json()["images"]) == 4 for r in responses)
    # All of them were still open while the others were served.
    assert srv.metric("gan_connections_open") >= len(held)
    assert srv.metric("gan_connections_closed_total") == 0
    assert httpx.get(f"{srv.url}/readyz").status_code == 200
    for sock in held:
        sock.close()


def test_the_guard_lets_go_of_slow_and_stalled_clients(make_server: Callable[..., Server]) -> None:
    srv = make_server(
        ["digits", "srresnet-x2"],
        header_timeout_s=0.5,
        body_timeout_s=0.5,
        min_body_rate=1000,
        write_timeout_s=0.5,
    )
    idle = connect(srv)
    partial_headers = connect(srv)
    partial_headers.sendall(b"GET /healthz HTTP/1.1\r\nHost: te")
    trickling = connect(srv)
    trickling.sendall(GENERATE_HEAD % 1000 + b"{")
    image = png_bytes(40, 40)
    upload = connect(srv)
    upload.sendall(UPSCALE_HEAD % len(image) + image[:200])
    reader = non_reader(srv)
    # The non-reader must not read until the server has let it go: reading would empty the buffers,
    # writing would resume, and the server would answer all its requests instead.
    wait_for(lambda: srv.metric("gan_connections_closed_total", reason="write_timeout") == 1, "dropped", srv)
    for sock in (idle, partial_headers, trickling, upload, reader):
        assert closed_by_server(sock)
    assert srv.metric("gan_connections_closed_total", reason="header_timeout") >= 2
    assert srv.metric("gan_connections_closed_total", reason="body_timeout") >= 2
    # The two requests cut off mid-body are logged and counted as 408, not as a server error (once
    # their handlers have seen the connection go, and the access log writer has had its turn).
    wait_for(lambda: len(cut_off(srv)) == 2, "two POST requests in the access log", srv)
    assert cut_off(srv) == {"/generate": 408, "/upscale": 408}, srv.log()
    wait_for(lambda: srv.metric("gan_requests_total", endpoint="/upscale", status="408") == 1, "408", srv)
    assert "Traceback" not in srv.log() and "ERROR" not in srv.log()
    # Every one of them was let go (the metrics request itself holds one connection).
    wait_for(lambda: srv.metric("gan_connections_open") == 1, "every connection closed", srv)
    assert httpx.get(f"{srv.url}/readyz").status_code == 200


def test_a_slow_but_steady_upload_is_served(make_server: Callable[..., Server]) -> None:
    """Over body_timeout_s in all, but never below min_body_rate: the upload goes on."""
    srv = make_server(["srresnet-x2"], body_timeout_s=0.5, min_body_rate=1000)
    image = png_bytes(40, 40)
    assert len(image) > 4000  # takes over 1 s at the pace below
    sock = connect(srv)
    sock.sendall(UPSCALE_HEAD % len(image))
    for start in range(0, len(image), 300):  # about 3,000 bytes/s
        sock.sendall(image[start : start + 300])
        time.sleep(0.1)
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b"x-output-size: 80x80" in answer.lower()
    assert srv.metric("gan_connections_closed_total") == 0
