"""Overload on a real server: a queue that refuses sheds until it is half empty, the door answers
the shedding model's requests in the HTTP protocol (an upload before its body is read), HTTP/1.1
keep-alive and Expect: 100-continue stay right, requests for other models go through, and a
refused connection is read again only after a pause.

The shedding is made real: one 1024x1024 upload fills the upscaler's queue (121 tiles of 128), a
second of 25 tiles is refused, and the queue then takes seconds to drain to half, longer on a
slower machine.
Loopback only; every socket has a timeout."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Callable

import httpx
import numpy as np
from PIL import Image

from tests.live_server import Server

UPSCALER = "srresnet-x2"


def photo(side: int) -> bytes:
    """A PNG with texture (noise compresses poorly, so the upload is large)."""
    pixels = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def connect(srv: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer: (status, headers lower-cased, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before an answer's headers: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk
    assert len(body) == length, "more bytes than the answer's length: an answer nobody asked for"
    return int(lines[0].split(" ")[1]), headers, body


def closed(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def upscale_head(length: int, extra: str = "") -> bytes:
    return (
        f"POST /upscale?model={UPSCALER} HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


def astronaut(side: int) -> bytes:
    """scikit-image's astronaut photograph, side x side, as PNG."""
    import skimage.data

    buffer = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).resize((side, side)).save(buffer, "PNG")
    return buffer.getvalue()


def shedding_upscaler(srv: Server) -> socket.socket:
    """Fills the upscaler's queue with one big upload and makes it shed with a second; returns the
    big upload's connection (closing it drops what is left of its work)."""
    big = astronaut(1024)
    filler = connect(srv)
    filler.sendall(upscale_head(len(big), "X-Deadline-Ms: 600000\r\n") + big)
    wait_for(lambda: srv.metric("gan_queue_depth_units", model=UPSCALER) >= 110, "the big upload's tiles")
    second = httpx.post(  # 25 tiles, which do not fit beside over 103
        f"{srv.url}/upscale",
        params={"model": UPSCALER},
        content=photo(512),
        headers={"Content-Type": "image/png"},
        timeout=60,
    )
    assert second.status_code == 429, second.text
    assert srv.metric("gan_shedding", model=UPSCALER) == 1
    return filler


def test_a_shedding_upscaler_refuses_uploads_at_their_headers(make_server: Callable[..., Server]) -> None:
    # Two lanes whatever the machine's cores: the queue drains at the same pace everywhere.
    srv = make_server(["digits", UPSCALER], max_queue_tiles=128, refusal_pause_ms=300, concurrent_batches=2)
    filler = shedding_upscaler(srv)
    at_door = srv.metric("gan_refused_at_door_total", endpoint="/upscale")

    # Refused before the body is sent: the answer comes to the headers alone.
    sock = connect(srv)
    body = photo(300)
    sock.sendall(upscale_head(len(body), "X-Request-ID: door-test-1\r\n"))
    status, headers, answer = read_answer(sock)
    assert status == 429
    assert int(headers["retry-after"]) >= 1
    assert headers["x-request-id"] == "door-test-1"
    assert headers["content-type"] == "application/json"
    assert "connection" not in headers  # kept alive
    error = json.loads(answer)["error"]
    assert error["code"] == "queue_full" and UPSCALER in error["message"]
    assert srv.metric("gan_refused_at_door_total", endpoint="/upscale") == at_door + 1

    # The body still comes (the client sends it anyway) and is dropped: the connection is usable,
    # and a request sent on it after the body is read only once the refused one's pause is over
    # (300 ms here; a request that had already arrived with the body would be read at once).
    sock.sendall(body)
    time.sleep(0.05)
    sent = time.monotonic()
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
    status, _, answer = read_answer(sock)
    waited = time.monotonic() - sent
    assert status == 200 and json.loads(answer)["status"] == "ok"
    assert waited >= 0.15, f"the refused connection was read again after {waited * 1000:.1f} ms"
    sock.close()

    # A client that waits for 100 Continue is answered at once and the connection closed: its
    # body will not come, so the next bytes on it could not be read as a request.
    sock = connect(srv)
    sock.sendall(upscale_head(len(body), "Expect: 100-continue\r\n"))
    status, headers, _ = read_answer(sock)
    assert status == 429 and headers["connection"] == "close"
    assert closed(sock)
    sock.close()

    # An upload over the body limit gets the application's 413, which no retry changes, not a 429.
    sock = connect(srv)
    sock.sendall(upscale_head(30 * 1024 * 1024))
    status, _, answer = read_answer(sock)
    assert status == 413 and json.loads(answer)["error"]["code"] == "payload_too_large"
    sock.close()

    # Connection: close is honoured once the body is in.
    sock = connect(srv)
    sock.sendall(upscale_head(len(body), "Connection: close\r\n") + body)
    status, headers, _ = read_answer(sock)
    assert status == 429 and headers["connection"] == "close"
    assert closed(sock)
    sock.close()

    # Requests for a model that is not shedding go through the door to the application, their
    # body read by the door (a JSON one) or handed over mid-way (one over 64 KiB).
    generated = httpx.post(f"{srv.url}/generate", json={"model": "digits", "n": 2, "seed": 5}, timeout=30)
    assert generated.status_code == 200 and len(generated.json()["images"]) == 2
    padded = b'{"model": "digits", "n": 1, "seed": 5' + b" " * 70_000 + b"}"
    big_body = httpx.post(
        f"{srv.url}/generate", content=padded, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert big_body.status_code == 200
    assert big_body.json()["images"][0]["data"] == generated.json()["images"][0]["data"]
    assert srv.metric("gan_shedding", model=UPSCALER) == 1, "the checks must run while it sheds"

    # The big upload's client leaves: its tiles are dropped, the queue drains, and the upscaler
    # takes work again.
    filler.close()
    wait_for(lambda: srv.metric("gan_queue_depth_units", model=UPSCALER) == 0, "the queue to drain")
    again = httpx.post(
        f"{srv.url}/upscale",
        params={"model": UPSCALER},
        content=photo(128),
        headers={"Content-Type": "image/png"},
        timeout=60,
    )
    assert again.status_code == 200
    assert srv.metric("gan_shedding", model=UPSCALER) == 0


def test_a_shedding_generator_refuses_at_the_door_once_its_body_names_it(
    make_server: Callable[..., Server],
) -> None:
    # A queue of 64 images run one at a time: 4 requests of 16 fill it, a 5th is refused by the
    # application and starts the shedding; until the queue is down to 32, the door refuses.
    srv = make_server(["digits-style"], max_queue_units=64, max_batch_size=1, concurrent_batches=1)
    answers: list[httpx.Response] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                answers.append(client.post(f"{srv.url}/generate", json={"model": "digits-style", "n": 16}))

    loaders = [threading.Thread(target=load, daemon=True) for _ in range(6)]
    for thread in loaders:
        thread.start()
    probes: list[tuple[int, dict[str, str], bytes]] = []

    def refused_at_door() -> bool:
        sock = connect(srv)
        request = json.dumps({"model": "digits-style", "n": 1}).encode()
        sock.sendall(
            b"POST /generate HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"X-Request-ID: gen-door\r\nContent-Length: %d\r\n\r\n%s" % (len(request), request)
        )
        probes.append(read_answer(sock))
        sock.close()
        return probes[-1][0] == 429 and srv.metric("gan_refused_at_door_total", endpoint="/generate") > 0

    try:
        wait_for(refused_at_door, "a refusal at the door", timeout=60)
    finally:
        stop.set()
        for thread in loaders:
            thread.join(timeout=120)
    _, headers, body = probes[-1]
    assert headers["x-request-id"] == "gen-door" and int(headers["retry-after"]) >= 1
    assert json.loads(body)["error"]["code"] == "queue_full"
    assert {a.status_code for a in answers} <= {200, 429}
    assert all(len(a.json()["images"]) == 16 for a in answers if a.status_code == 200)
    assert all(a.headers.get("retry-after") for a in answers if a.status_code == 429)
    # Every answer is counted once, whoever gave it (the door, or the application).
    refused = sum(a.status_code == 429 for a in answers) + sum(p[0] == 429 for p in probes)
    assert srv.metric("gan_requests_total", endpoint="/generate", status="429") == refused


def still_open(sock: socket.socket) -> bool:
    """Whether the server has not closed the connection (nothing is due on it)."""
    sock.settimeout(0.2)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except TimeoutError:
        return True
    except ConnectionResetError:
        return False


def test_a_refused_connection_is_kept_open_through_its_retry_after(
    make_server: Callable[..., Server],
) -> None:
    """A client told to come back in R seconds finds its connection still open when it does (up to
    keep_alive_s and 1.5 R idle), instead of racing the server's close with its next request."""
    srv = make_server([UPSCALER], max_queue_tiles=128, concurrent_batches=2, keep_alive_s=1)
    big = astronaut(1024)
    filler = connect(srv)
    filler.sendall(upscale_head(len(big), "X-Deadline-Ms: 600000\r\n") + big)
    wait_for(lambda: srv.metric("gan_queue_depth_units", model=UPSCALER) >= 110, "the big upload's tiles")
    body = photo(512)
    by_app, by_door, answered = connect(srv), connect(srv), connect(srv)
    by_app.sendall(upscale_head(len(body)) + body)  # the first refusal: the application's
    status, app_headers, _ = read_answer(by_app)
    assert status == 429 and srv.metric("gan_shedding", model=UPSCALER) == 1
    by_door.sendall(upscale_head(len(body)) + body)  # then the door's, at the headers
    status, door_headers, _ = read_answer(by_door)
    assert status == 429 and srv.metric("gan_refused_at_door_total", endpoint="/upscale") == 1
    assert int(app_headers["retry-after"]) >= 1 and int(door_headers["retry-after"]) >= 1
    answered.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
    assert read_answer(answered)[0] == 200
    time.sleep(2.0)  # past keep_alive_s and the guard's next look, short of 1 s + 1.5 x Retry-After
    assert not still_open(answered)  # an answered connection: closed after keep_alive_s
    for sock in (by_app, by_door):
        assert still_open(sock)
        sock.settimeout(30)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        assert read_answer(sock)[0] == 200
        sock.close()
    answered.close()
    filler.close()
