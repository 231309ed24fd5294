"""Batching, back-pressure, deadlines, vanished clients and graceful drain, on a real server.
Bounded in requests and time; loopback only."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Callable
from urllib.parse import urlparse

import httpx

from tests.live_server import Server


async def _burst(
    url: str, bodies: list[dict[str, object]], headers: dict[str, str] | None = None
) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return await asyncio.gather(
            *(client.post(f"{url}/generate", json=b, headers=headers) for b in bodies)
        )


def test_concurrent_requests_share_batches(server: Server) -> None:
    before_batches = server.metric("gan_batch_size_units_count", model="digits")
    before_units = server.metric("gan_batch_size_units_sum", model="digits")
    responses = asyncio.run(_burst(server.url, [{"model": "digits", "seed": i} for i in range(48)]))
    assert all(r.status_code == 200 for r in responses)
    batches = server.metric("gan_batch_size_units_count", model="digits") - before_batches
    units = server.metric("gan_batch_size_units_sum", model="digits") - before_units
    assert units == 48
    assert batches < 48, "48 concurrent n=1 requests ran as 48 single-image batches"
    # Each answer is its own seed's image, whatever batch it shared.
    single = httpx.post(f"{server.url}/generate", json={"model": "digits", "seed": 17}).json()
    assert responses[17].json()["images"][0]["data"] == single["images"][0]["data"]


def test_a_large_request_spans_batches(make_server: Callable[..., Server]) -> None:
    srv = make_server(["digits"], max_batch_size=8)
    r = httpx.post(f"{srv.url}/generate", json={"model": "digits", "n": 60, "seed": 0}, timeout=30)
    assert r.status_code == 200 and len(r.json()["images"]) == 60
    assert srv.metric("gan_batch_size_units_count", model="digits") == 8  # 7 x 8 + 4
    whole = [i["data"] for i in r.json()["images"]]
    part = httpx.post(f"{srv.url}/generate", json={"model": "digits", "n": 5, "seed": 30}).json()
    assert whole[30:35] == [i["data"] for i in part["images"]]


def test_full_queue_answers_429_at_once(make_server: Callable[..., Server]) -> None:
    srv = make_server(["digits"], max_batch_size=1, max_queue_units=8)
    responses = asyncio.run(_burst(srv.url, [{"model": "digits", "n": 4, "seed": i} for i in range(12)]))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) == {200, 429} and statuses.count(200) >= 2
    rejected = next(r for r in responses if r.status_code == 429)
    assert rejected.json()["error"]["code"] == "queue_full" and int(rejected.headers["retry-after"]) >= 1
    assert srv.metric("gan_rejections_total", model="digits", reason="queue_full") == statuses.count(429)
    assert httpx.get(f"{srv.url}/readyz").status_code == 200


def test_deadline_that_cannot_be_met_costs_no_model_time(make_server: Callable[..., Server]) -> None:
    srv = make_server(["digits"], max_batch_size=1)
    before = srv.metric("gan_batch_size_units_sum", model="digits")
    r = httpx.post(
        f"{srv.url}/generate", json={"model": "digits", "n": 64, "seed": 0}, headers={"x-deadline-ms": "1"}
    )
    assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded"
    assert srv.metric("gan_batch_size_units_sum", model="digits") == before
    assert srv.metric("gan_rejections_total", model="digits", reason="deadline") == 1
    ok = httpx.post(f"{srv.url}/generate", json={"model": "digits"}, headers={"x-deadline-ms": "10000"})
    assert ok.status_code == 200


def _raw_request(url: str, body: bytes) -> socket.socket:
    parsed = urlparse(url)
    sock = socket.create_connection((parsed.hostname, parsed.port))
    head = (
        f"POST /generate HTTP/1.1\r\nHost: {parsed.hostname}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def test_a_vanished_clients_work_is_skipped(make_server: Callable[..., Server]) -> None:
    # No bound in time: the queue this test builds (576 images, one per batch) is seconds of work.
    srv = make_server(["digits"], max_batch_size=1, concurrent_batches=1, max_queue_ms=0)
    busy = [_raw_request(srv.url, b'{"model": "digits", "n": 64, "seed": 0}') for _ in range(8)]
    time.sleep(0.02)
    gone = _raw_request(srv.url, b'{"model": "digits", "n": 64, "seed": 1000}')
    time.sleep(0.02)
    gone.close()  # leaves while its 64 images are still queued behind 512 others, one per batch
    for sock in busy:
        sock.settimeout(60)
        assert b"200 OK" in sock.recv(65536)
        sock.close()
    deadline = time.monotonic() + 30
    while srv.metric("gan_rejections_total", model="digits", reason="client_disconnected") < 1:
        assert time.monotonic() < deadline, srv.log()
        time.sleep(0.05)
    assert srv.metric("gan_batch_size_units_sum", model="digits") == 8 * 64  # none of the vanished 64
    assert srv.metric("gan_images_generated_total", model="digits") == 8 * 64


def test_sigterm_drains_without_losing_accepted_requests(make_server: Callable[..., Server]) -> None:
    srv = make_server(["digits"], max_batch_size=4, drain_seconds=1)

    async def scenario() -> tuple[list[httpx.Response], int]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=40)) as client:
            requests = [
                asyncio.create_task(
                    client.post(f"{srv.url}/generate", json={"model": "digits", "n": 16, "seed": i})
                )
                for i in range(16)
            ]
            await asyncio.sleep(0.2)
            srv.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            readiness = (await client.get(f"{srv.url}/readyz")).status_code
            return list(await asyncio.gather(*requests)), readiness

    responses, readiness = asyncio.run(scenario())
    assert readiness == 503
    assert [r.status_code for r in responses] == [200] * 16
    assert all(len(r.json()["images"]) == 16 for r in responses)
    # After a graceful shutdown uvicorn re-raises the signal, so the exit status says "SIGTERM".
    assert srv.process.wait(30) == -signal.SIGTERM
    assert "draining" in srv.log() and "Application shutdown complete" in srv.log()
