"""The library against a real server: every call, typed errors, retries."""

from __future__ import annotations

import asyncio
import http.server
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import numpy as np
import pytest
from PIL import Image

from client import (
    AnimationResult,
    AsyncGanClient,
    GanClient,
    Overloaded,
    RequestRejected,
    RetryPolicy,
    ServerUnreachable,
    UpscaleResult,
)
from client.api import parse_upscale, upscale_request
from client.errors import ServerFailed, error_from_response
from tests.live_server import Server, free_port

FAST = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05)


def png(width: int, height: int, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_generate_upscale_models_health(small_server: Server, tmp_path: Path) -> None:
    with GanClient(small_server.url) as gan:
        assert gan.health() and gan.ready()
        assert {m["name"] for m in gan.models()} == {"digits-conditional", "srresnet-x2"}
        result = gan.generate(3, model="digits-conditional", seed=40, labels=["7", 2, 7])
        assert (result.model, result.format, result.height, result.width) == (
            "digits-conditional",
            "png",
            32,
            32,
        )
        assert [(i.seed, i.label) for i in result.images] == [(40, 7), (41, 2), (42, 7)]
        assert all(i.data.startswith(b"\x89PNG") for i in result.images)
        # same seed and label, same bytes, whatever else was in the request
        again = gan.generate(seeds=[41], labels=2, model="digits-conditional")
        assert again.images[0].data == result.images[1].data

        path = tmp_path / "in.png"
        path.write_bytes(png(24, 10))
        up = gan.upscale(path, model="srresnet-x2", format="webp")
        assert (up.media_type, up.model, up.input_size, up.output_size) == (
            "image/webp",
            "srresnet-x2",
            (24, 10),
            (48, 20),
        )
        assert Image.open(io.BytesIO(up.data)).size == (48, 20)
        assert gan.upscale(png(8, 8)).output_size == (16, 16)  # bytes: the type is sniffed


def test_upscale_to_any_size_says_how_it_was_made(server: Server) -> None:
    with GanClient(server.url) as gan:
        up = gan.upscale(png(40, 30), scale=2.5)  # the x2 model (not the x4), then a resize
        assert (up.input_size, up.output_size, up.model) == ((40, 30), (100, 75), "srresnet-x2")
        assert (up.models, up.resize, up.crop, up.detail, up.bit_depth) == (
            ["srresnet-x2@1"],
            "lanczos 80x60 to 100x75",
            None,
            None,
            8,
        )
        assert Image.open(io.BytesIO(up.data)).size == (100, 75)
        # cover: x2 makes 80x60, which covers 60x60 as it is; the middle 60 columns are kept
        cover = gan.upscale(png(40, 30), width=60, height=60, fit="cover", format="webp")
        assert (cover.output_size, cover.resize, cover.crop) == ((60, 60), "none", "60x60+10+0")
        assert Image.open(io.BytesIO(cover.data)).size == (60, 60)
        one_side = gan.upscale(png(40, 30), width=50)
        assert (one_side.output_size, one_side.resize, one_side.crop) == (
            (50, 38),
            "lanczos 80x60 to 50x38",
            None,
        )
        deep = io.BytesIO()
        Image.fromarray(np.arange(1200, dtype=np.uint16).reshape(30, 40) * 50).save(deep, format="PNG")
        assert gan.upscale(deep.getvalue(), model="srresnet-x2").bit_depth == 16  # a 16-bit PNG stays so
        with pytest.raises(RequestRejected, match="scale"):
            gan.upscale(png(40, 30), scale=5)  # above every served factor


def test_upscale_strip_says_which_metadata_is_dropped(small_server: Server) -> None:
    image = Image.new("RGB", (40, 30), (10, 20, 30))
    exif = image.getexif()
    exif[0x010F] = "TestCam"  # Make
    exif.get_ifd(0x8825)[2] = (48.0, 51.0, 30.0)  # GPSLatitude
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", exif=exif.tobytes())

    def exif_of(strip: str | None) -> Image.Exif:
        with GanClient(small_server.url) as gan:
            return Image.open(io.BytesIO(gan.upscale(buffer.getvalue(), strip=strip).data)).getexif()

    default, kept, bare = exif_of(None), exif_of("none"), exif_of("all")
    assert default[0x010F] == "TestCam" and 0x8825 not in default  # the server's default: gps
    assert kept[0x010F] == "TestCam" and kept.get_ifd(0x8825)[2] == (48.0, 51.0, 30.0)
    assert not len(bare)


def test_upscale_options_left_out_are_not_sent_and_old_answers_still_parse() -> None:
    request = upscale_request(b"x", "image/png", scale=2.5, detail=0.0)
    assert request.params == {"scale": "2.5", "detail": "0.0"}  # a server from before them gets none
    assert upscale_request(b"x", "image/png").params == {}
    # A server from before X-Models ran X-Model alone, at its own size, 8-bit.
    old = parse_upscale(
        httpx.Response(
            200,
            content=b"png",
            headers={"content-type": "image/png", "x-model": "srresnet-x2", "x-model-version": "3"},
        )
    )
    assert (old.models, old.resize, old.crop, old.detail, old.bit_depth) == (
        ["srresnet-x2@3"],
        "none",
        None,
        None,
        8,
    )


def test_upscale_detail_blends_a_family_sync_and_async(server: Server) -> None:
    with GanClient(server.url) as gan:
        up = gan.upscale(png(40, 30), detail=0.5)
    # Both models of the x4 family ran; the faithful one is named first (X-Model).
    assert [m.split("@")[0] for m in up.models] == ["srresnet-x4", "srgan-x4"]
    assert (up.model, up.detail, up.output_size, up.resize) == ("srresnet-x4", 0.5, (160, 120), "none")

    async def scenario() -> UpscaleResult:
        async with AsyncGanClient(server.url) as gan:
            return await gan.upscale(png(40, 30), detail=0.25, scale=2)

    half = asyncio.run(scenario())
    assert [m.split("@")[0] for m in half.models] == ["srresnet-x4", "srgan-x4"]
    assert (half.detail, half.output_size, half.resize) == (0.25, (80, 60), "lanczos 160x120 to 80x60")


def test_walk_sync_and_async(small_server: Server) -> None:
    with GanClient(small_server.url) as gan:
        walk = gan.walk(3, 9, 4, model="digits-conditional", label="5", method="lerp")
        assert (walk.from_seed, walk.to_seed, walk.method) == (3, 9, "lerp")
        assert (walk.label, walk.label_name) == (5, "5")
        assert walk.positions == pytest.approx([0, 1 / 3, 2 / 3, 1])
        last = gan.generate(seeds=[9], labels=5, model="digits-conditional").images[0].data
        # the same pixels; the files differ in their provenance records (a walk's, a /generate's)
        assert Image.open(io.BytesIO(walk.images[-1])).tobytes() == Image.open(io.BytesIO(last)).tobytes()

    async def scenario() -> list[bytes]:
        async with AsyncGanClient(small_server.url) as gan:
            return (await gan.walk(3, 9, 4, model="digits-conditional", label=5, method="lerp")).images

    assert asyncio.run(scenario()) == walk.images


def test_a_loop_and_its_animation_sync_and_async(small_server: Server) -> None:
    with GanClient(small_server.url) as gan:
        loop = gan.walk(seeds=[3, 9, 4], steps=2, model="digits-conditional", label=5)
        assert (loop.seeds, loop.from_seed, loop.to_seed) == ([3, 9, 4], 3, 3)
        assert (loop.segments, loop.positions) == ([0, 0, 1, 1, 2, 2], [0.0, 0.5] * 3)
        animation = gan.walk(seeds=[3, 9, 4], steps=2, model="digits-conditional", label=5, animation="apng")
        assert isinstance(animation, AnimationResult)
        assert (animation.media_type, animation.frames, animation.frame_ms) == ("image/apng", 6, 100)
        assert (animation.seeds, animation.label, animation.model, animation.version) == (
            [3, 9, 4],
            5,
            "digits-conditional",
            1,
        )
        image = Image.open(io.BytesIO(animation.data))
        assert image.n_frames == 6
        image.seek(3)
        assert np.array_equal(np.asarray(image), np.asarray(Image.open(io.BytesIO(loop.images[3]))))
        with pytest.raises(RequestRejected, match="frame_ms"):
            gan.walk(1, 2, animation="gif", frame_ms=5, model="digits-conditional")

    async def scenario() -> AnimationResult:
        async with AsyncGanClient(small_server.url) as gan:
            return await gan.walk(3, 9, 3, model="digits-conditional", animation="gif", frame_ms=40)

    gif = asyncio.run(scenario())
    assert (gif.media_type, gif.frames, gif.frame_ms, gif.seeds) == ("image/gif", 3, 40, [3, 9])
    assert Image.open(io.BytesIO(gif.data)).n_frames == 3


def test_errors_are_typed_with_the_servers_code(small_server: Server) -> None:
    with GanClient(small_server.url, retry=FAST) as gan:
        with pytest.raises(RequestRejected) as unknown:
            gan.generate(1, model="nope")
        assert (unknown.value.status, unknown.value.code) == (404, "unknown_model")
        assert "digits-conditional" in unknown.value.message and unknown.value.request_id
        with pytest.raises(RequestRejected) as label:
            gan.generate(1, model="digits-conditional", labels="eleven")
        assert (label.value.status, label.value.code) == (400, "invalid_request")
        with pytest.raises(RequestRejected) as corrupt:
            gan.upscale(b"\x89PNG\r\n\x1a\n" + b"x" * 50)
        assert corrupt.value.status == 400
        with pytest.raises(ValueError, match="not a PNG, JPEG or WebP"):
            gan.upscale(b"hello")


def test_async_client_runs_calls_concurrently(small_server: Server) -> None:
    async def scenario() -> list[int]:
        async with AsyncGanClient(small_server.url) as gan:
            results = await asyncio.gather(*(gan.generate(2, seed=10 * k) for k in range(8)))
            assert await gan.ready()
            return [image.seed for r in results for image in r.images]

    assert asyncio.run(scenario()) == [s for k in range(8) for s in (10 * k, 10 * k + 1)]


def test_unreachable_server_is_retried_then_raised() -> None:
    waits: list[float] = []
    with GanClient(
        f"http://127.0.0.1:{free_port()}", retry=FAST, on_retry=lambda e, w: waits.append(w)
    ) as gan:
        assert not gan.health()
        with pytest.raises(ServerUnreachable):
            gan.generate(1)
    assert len(waits) == 2  # three tries in all


class _Stub(http.server.BaseHTTPRequestHandler):
    """Answers 429 (Retry-After: 1) to the first request, then 200 with an empty model list;
    records each request's headers and time."""

    seen: ClassVar[list[tuple[float, dict[str, str]]]] = []

    def do_GET(self) -> None:
        self.seen.append((time.monotonic(), dict(self.headers)))
        if len(self.seen) == 1:
            body, status, extra = (
                b'{"error":{"code":"queue_full","message":"busy"}}',
                429,
                {"Retry-After": "1"},
            )
        else:
            body, status, extra = b'{"models":[],"failed":{}}', 200, {}
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **extra}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub_url() -> Iterator[str]:
    _Stub.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_retry_after_is_honoured_and_the_api_key_sent(stub_url: str) -> None:
    with GanClient(stub_url, api_key="s3cret", retry=FAST) as gan:
        assert gan.models() == []
    (first, headers), (second, _) = _Stub.seen
    assert second - first >= 1.0  # the backoff alone would have waited at most 0.05 s
    assert headers["X-API-Key"] == "s3cret"


def test_retry_policy() -> None:
    policy = RetryPolicy(attempts=4, base_delay_s=1.0, max_delay_s=3.0)
    busy = Overloaded(429, "queue_full", "busy", retry_after=2.0)
    assert policy.should_retry(busy, 1) and policy.should_retry(busy, 3) and not policy.should_retry(busy, 4)
    assert not policy.should_retry(RequestRejected(400, "invalid_request", "bad"), 1)
    assert not policy.should_retry(ServerFailed(500, "inference_failed", "boom"), 1)
    assert policy.should_retry(ServerUnreachable("refused"), 1)
    assert all(2.0 <= policy.delay(busy, 1) <= 3.0 for _ in range(200))  # Retry-After is a floor
    delays = [policy.delay(ServerUnreachable("x"), attempt) for attempt in (1, 2, 3, 9) for _ in range(200)]
    assert all(0 <= d <= 3.0 for d in delays) and len(set(delays)) > 100  # jittered, capped
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


def test_error_from_a_proxy_that_is_not_the_service() -> None:
    error = error_from_response(
        502, b"<html>Bad Gateway</html>", {"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}
    )
    assert isinstance(error, Overloaded) and error.code == "http_error" and "Bad Gateway" in error.message
    assert error.retry_after is None  # the date form is not used
    assert isinstance(error_from_response(413, b"{}", {}), RequestRejected)


def test_bad_url_is_refused() -> None:
    with pytest.raises(ValueError, match="http://"):
        GanClient("127.0.0.1:8000")


def test_api_key_against_a_server_that_requires_one(make_server: Callable[..., Server]) -> None:
    key = "client-test-key-0123456789"
    srv = make_server(["digits"], api_keys=key)
    with GanClient(srv.url, api_key=key, retry=FAST) as gan:
        assert gan.generate(1, seed=3).images[0].seed == 3
    with GanClient(srv.url, retry=FAST) as gan, pytest.raises(RequestRejected) as refused:
        gan.generate(1)
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")  # not retried: a 4xx


def test_generate_stream_yields_the_same_images_as_generate(small_server: Server) -> None:
    options = {"model": "digits-conditional", "seed": 40, "labels": [3, 4] * 20}
    with GanClient(small_server.url) as gan:
        whole = gan.generate(40, **options)
        streamed = list(gan.generate_stream(40, **options))
    assert [index for index, _ in streamed] == list(range(40))  # two parts of 32 and 8, in order
    assert [image for _, image in streamed] == whole.images

    async def scenario() -> list[tuple[int, object]]:
        async with AsyncGanClient(small_server.url) as gan:
            return [pair async for pair in gan.generate_stream(40, **options)]

    assert asyncio.run(scenario()) == streamed
    with GanClient(small_server.url, retry=FAST) as gan, pytest.raises(RequestRejected) as bad:
        list(gan.generate_stream(3, model="digits-conditional", labels="eleven"))
    assert bad.value.status == 400  # found before the stream began: the error with its status


def test_upscale_progress_reports_tiles_and_gives_the_same_image(small_server: Server) -> None:
    data = png(300, 200, seed=3)  # 2 rows of 3 tiles at x2
    seen: list[tuple[int, int]] = []
    with GanClient(small_server.url) as gan:
        plain = gan.upscale(data, model="srresnet-x2", scale=1.5)
        reported = gan.upscale(data, model="srresnet-x2", scale=1.5, progress=lambda *p: seen.append(p))
    assert seen == [(0, 6), (3, 6), (6, 6)]
    assert reported == plain  # every field: bytes, sizes, models, resize

    async def scenario() -> UpscaleResult:
        async with AsyncGanClient(small_server.url) as gan:
            return await gan.upscale(data, model="srresnet-x2", scale=1.5, progress=lambda *p: None)

    assert asyncio.run(scenario()) == plain


class _BrokenStream(http.server.BaseHTTPRequestHandler):
    """A stream that is busy once (429), then sends a head and an image line and ends with an
    error line, as the service does when a later part misses its deadline."""

    tries: ClassVar[int] = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).tries += 1
        if self.tries == 1:
            body = b'{"error":{"code":"queue_full","message":"busy"}}'
            self.send_response(429)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        image = '{"index":0,"seed":1,"label":null,"label_name":null,"data":"aGk="}'
        error = '{"error":{"code":"deadline_exceeded","message":"the deadline passed while queued"}}'
        body = f'{{"model":"m","n":2}}\n{image}\n{error}\n'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_stream_is_retried_until_it_begins_and_its_error_line_is_raised() -> None:
    _BrokenStream.tries = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BrokenStream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    got = []
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with GanClient(url, retry=FAST) as gan, pytest.raises(Overloaded) as late:
            for pair in gan.generate_stream(2):
                got.append(pair)
    finally:
        server.shutdown()
    assert _BrokenStream.tries == 2  # the 429 was retried; the late error was not
    assert [(i, image.data) for i, image in got] == [(0, b"hi")]
    assert (late.value.status, late.value.code) == (504, "deadline_exceeded")


class _OldOrFlakyServer(http.server.BaseHTTPRequestHandler):
    """/upscale: first a stream that breaks off with a retryable error line, then a plain image
    (a server from before streams); /generate: a plain JSON answer."""

    tries: ClassVar[int] = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).tries += 1
        if self.path.startswith("/upscale") and self.tries == 1:
            kind = "application/x-ndjson"
            body = b'{"tiles_done":0,"tiles":4}\n{"error":{"code":"not_ready","message":"swapped out"}}\n'
            headers = {}
        elif self.path.startswith("/upscale"):
            kind, body = "image/png", png(4, 4)
            headers = {"X-Model": "m", "X-Model-Version": "2", "X-Output-Size": "8x8", "X-Models": "m@2"}
        else:
            kind = "application/json"
            image = {"seed": 5, "label": None, "label_name": None, "data": "aGk="}
            body = json.dumps({"model": "m", "version": 1, "format": "png", "images": [image] * 2}).encode()
            headers = {}
        self.send_response(200)
        for key, value in {"Content-Type": kind, "Content-Length": str(len(body)), **headers}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_broken_upscale_stream_is_asked_again_and_an_old_servers_answers_are_read() -> None:
    _OldOrFlakyServer.tries = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OldOrFlakyServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    seen: list[tuple[int, int]] = []
    try:
        with GanClient(f"http://127.0.0.1:{server.server_address[1]}", retry=FAST) as gan:
            result = gan.upscale(png(4, 4), progress=lambda *p: seen.append(p))
            images = list(gan.generate_stream(2))
    finally:
        server.shutdown()
    assert seen == [(0, 4)]  # from the stream that broke off; the second answer was not a stream
    assert (result.model, result.version, result.output_size, result.models) == ("m", 2, (8, 8), ["m@2"])
    assert [(i, image.data) for i, image in images] == [(0, b"hi"), (1, b"hi")]
