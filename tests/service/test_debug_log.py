"""GAN_SERVE_LOG_LEVEL=debug says what a user debugging a request wants: its model and version,
the admission decision, its wait in the queue and the batch it ran in, all under its request id."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

from tests.live_server import Server


def test_debug_logging_follows_a_request_through_the_queue(make_server: Callable[..., Server]) -> None:
    srv = make_server(["digits-conditional"], log_level="debug")
    r = httpx.post(
        f"{srv.url}/generate",
        json={"model": "digits-conditional", "n": 3, "seed": 1, "labels": 2},
        headers={"X-Request-ID": "debug-me"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    srv.stop()
    lines = [line for line in srv.log().splitlines() if "debug-me" in line]
    text = "\n".join(lines)
    assert re.search(
        r"DEBUG gan.batching model digits-conditional: request debug-me queued 3 images", text
    ), text
    assert re.search(r"request debug-me taken into a batch after [\d.]+ ms in the queue", text), text
    assert re.search(
        r"batch of \d+ images \(requests [^)]*debug-me[^)]*\) ran in [\d.]+ ms; pace [\d.]+ ms", text
    ), text
    assert re.search(
        r"request debug-me: POST /generate -> 200 in [\d.]+ ms \(model digits-conditional, version 1\)", text
    ), text


def test_info_logging_has_no_per_request_lines(server: Server) -> None:
    r = httpx.post(f"{server.url}/generate", json={"n": 1}, headers={"X-Request-ID": "quiet-one"}, timeout=30)
    assert r.status_code == 200
    assert not [line for line in server.log().splitlines() if "quiet-one" in line and "DEBUG" in line]
