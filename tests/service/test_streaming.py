"""Streamed answers (Accept: application/x-ndjson): /generate's images as their parts finish, the
same bytes as the whole answer; /upscale's tile progress, then the image."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from contract.errors import DeadlineExceeded
from service.api import stream
from service.schemas.requests import GenerateRequest
from service.served.batcher import CancelToken
from tests.live_server import REPO, Server

NDJSON = {"accept": "application/x-ndjson"}
PHOTO = REPO / "training/sr/photos/test/blinds.png"  # 480x360: 20 x2 tiles in 4 rows


def streamed(server: Server, path: str, **kwargs: Any) -> tuple[httpx.Response, list[dict[str, Any]]]:
    with httpx.stream("POST", f"{server.url}{path}", timeout=120, **kwargs) as r:
        if r.status_code != 200:
            r.read()
            return r, []
        lines = [json.loads(line) for line in r.iter_lines()]
    return r, lines


@pytest.mark.parametrize(
    "body",
    [
        {"model": "digits-conditional", "n": 64, "seed": 11, "labels": 3},  # two parts of 32
        {"model": "digits-conditional", "seeds": [5, 900, 7], "labels": [1, "2", 3], "format": "webp"},
        {"model": "digits-style", "n": 40, "seed": 3, "truncation_psi": 0.7, "noise_seed": 100},
        {"model": "digits", "n": 33, "seed": 0, "format": "jpeg"},
    ],
)
def test_a_streamed_answer_holds_the_same_images_as_the_whole_one(
    server: Server, body: dict[str, Any]
) -> None:
    whole = httpx.post(f"{server.url}/generate", json=body, timeout=60)
    assert whole.status_code == 200, whole.text
    expected = whole.json()
    r, lines = streamed(server, "/generate", json=body, headers=NDJSON)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
    assert r.headers["x-model"] == body["model"]
    head, images = lines[0], lines[1:]
    for key in ("model", "version", "format", "height", "width", "channels"):
        assert head[key] == expected[key]
    assert head["n"] == len(expected["images"]) == len(images)
    assert [line["index"] for line in images] == list(range(len(images)))
    for line, image in zip(images, expected["images"], strict=True):
        assert {k: v for k, v in line.items() if k != "index"} == image  # the same fields and bytes
    if "truncation_psi" in body:
        assert head["truncation_psi"] == expected["truncation_psi"]


def test_random_seeds_are_drawn_once_for_every_part(server: Server) -> None:
    _, lines = streamed(server, "/generate", json={"model": "digits", "n": 64}, headers=NDJSON)
    seeds = [line["seed"] for line in lines[1:]]
    assert seeds == list(range(seeds[0], seeds[0] + 64))


def test_errors_found_before_anything_is_sent_keep_their_status(server: Server) -> None:
    for body, status, message in [
        ({"model": "digits-conditional", "n": 40, "labels": [1] * 39 + ["no-such"]}, 400, "unknown label"),
        ({"model": "digits", "n": 65}, 400, "this server's limit"),
        ({"model": "no-such-model", "n": 2}, 404, "unknown model"),
        ({"model": "digits", "n": 2, "labels": 1}, 400, "unconditional"),
        ({"model": "digits-conditional", "n": 40, "labels": [1, 2, 3]}, 400, "3 labels for 40 images"),
    ]:
        r, _ = streamed(server, "/generate", json=body, headers=NDJSON)
        assert r.status_code == status and message in r.text, (body, r.text)


def test_json_stays_the_default(server: Server) -> None:
    body = {"model": "digits", "n": 2, "seed": 1}
    for accept in ("*/*", "application/json, application/x-ndjson", "application/x-ndjson;q=0.5, */*"):
        r = httpx.post(f"{server.url}/generate", json=body, headers={"accept": accept}, timeout=60)
        assert r.headers["content-type"] == "application/json", accept
    r = httpx.post(f"{server.url}/generate", json=body, headers={"accept": "application/x-ndjson, */*;q=0.1"})
    assert r.headers["content-type"] == "application/x-ndjson"


def test_an_error_after_the_head_is_the_last_line() -> None:
    """A part that fails after the stream began (here: its deadline passed in the queue) ends the
    stream with an error line; the parts after it are cancelled when the answer ends."""

    async def run() -> tuple[list[bytes], list[bool]]:
        request = GenerateRequest(n=3, seed=1)
        parts = stream.parts(request, 1, 64)

        async def answer(part: GenerateRequest, cancel: CancelToken) -> Any:
            await asyncio.sleep({1: 0.01, 2: 0.02, 3: 10}[part.seed or 0])  # queued, then run
            if part.seed == 2:
                raise DeadlineExceeded("the deadline passed while queued")
            return type("Answer", (), {"images": []})()

        cancel = CancelToken()
        tasks = await stream.start_parts(answer, parts, cancel)
        lines = [line async for line in stream.generated_lines({"n": 3}, parts, tasks, dict)]
        await stream.cancel_all(tasks, cancel)  # as the Stream does when the answer ends
        return lines, [t.cancelled() for t in tasks]

    lines, cancelled = asyncio.run(run())
    assert json.loads(lines[0]) == {"n": 3}
    assert json.loads(lines[-1]) == {
        "error": {"code": "deadline_exceeded", "message": "the deadline passed while queued"}
    }
    assert cancelled == [False, False, True]


def test_parts_slice_every_per_image_field() -> None:
    request = GenerateRequest(seeds=[1, 2, 3, 4, 5], labels=[0, 1, 2, 3, 4], noise_seed=10)
    parts = stream.parts(request, 2, 64)
    assert [offset for offset, _ in parts] == [0, 2, 4]
    assert [p.seeds for _, p in parts] == [[1, 2], [3, 4], [5]]
    assert [p.labels for _, p in parts] == [[0, 1], [2, 3], [4]]
    assert [p.noise_seed for _, p in parts] == [10, 12, 14]
    assert [p.count for _, p in parts] == [2, 2, 1]
    ws = stream.parts(GenerateRequest(ws=["a", "b", "c"]), 2, 64)
    assert [p.ws for _, p in ws] == [["a", "b"], ["c"]]


# --- /upscale progress ----------------------------------------------------------------------------


def test_upscale_reports_tile_progress_then_the_same_image(server: Server) -> None:
    data = PHOTO.read_bytes()
    params = {"model": "srresnet-x2", "scale": 1.5}
    headers = {"content-type": "image/png", **NDJSON}
    r, lines = streamed(server, "/upscale", content=data, params=params, headers=headers)
    assert r.status_code == 200
    progress, answer = lines[:-1], lines[-1]
    assert [line["tiles_done"] for line in progress] == [0, 5, 10, 15, 20]
    assert all(line["tiles"] == 20 for line in progress)
    plain = httpx.post(
        f"{server.url}/upscale",
        content=data,
        params=params,
        headers={"content-type": "image/png"},
        timeout=120,
    )
    assert answer["done"] is True and answer["media_type"] == "image/png"
    assert base64.b64decode(answer["data"]) == plain.content
    assert answer["headers"]["X-Output-Size"] == plain.headers["x-output-size"] == "720x540"
    assert answer["headers"]["X-Resize"] == plain.headers["x-resize"]


def test_upscale_errors_before_the_tiles_are_queued_keep_their_status(
    server: Server, make_server: Callable[..., Server]
) -> None:
    headers = {"content-type": "image/png", **NDJSON}
    r, _ = streamed(server, "/upscale", content=PHOTO.read_bytes(), params={"scale": 9}, headers=headers)
    assert r.status_code == 400 and "1 to 4" in r.text
    r, _ = streamed(server, "/upscale", content=b"not an image", headers=headers)
    assert r.status_code == 400
    full = make_server(["srresnet-x2"], max_queue_tiles=4)
    r, _ = streamed(full, "/upscale", content=Path(PHOTO).read_bytes(), headers=headers)  # 20 tiles
    assert r.status_code == 429


def test_a_client_that_leaves_mid_stream_stops_the_rest_of_its_work(
    make_server: Callable[..., Server],
) -> None:
    """An x4 upscale of 20 tiles, one at a time on one lane (seconds of work): the client reads the
    first progress line and leaves; the tiles still queued are dropped, and the image is never
    finished."""
    srv = make_server(["srresnet-x4"], concurrent_batches=1)
    url = httpx.URL(srv.url)
    body = PHOTO.read_bytes()
    sock = socket.create_connection((url.host, url.port))
    sock.sendall(
        b"POST /upscale HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        b"Accept: application/x-ndjson\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    received = b""
    sock.settimeout(60)
    while b'"tiles_done"' not in received:
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    sock.close()
    deadline = time.monotonic() + 30
    while srv.metric("gan_queue_depth_units", model="srresnet-x4") > 0:  # dropped, or run
        assert time.monotonic() < deadline, srv.log()
        time.sleep(0.05)
    time.sleep(0.5)  # the tile that was running when the client left (about 0.15 s)
    assert srv.metric("gan_batch_size_units_sum", model="srresnet-x4") <= 2  # not the 20 tiles
    assert srv.metric("gan_pixels_upscaled_total", model="srresnet-x4") == 0
