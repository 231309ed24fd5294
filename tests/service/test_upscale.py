"""/upscale against a real server: formats, colour modes, orientation, tiling, bad uploads."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import skimage.data
from PIL import Image

from model_repository.tiling import pad_to_tile
from tests.live_server import REPO, Server


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def upscale(server: Server, data: bytes, content_type: str = "image/png", **params: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/upscale",
        content=data,
        params=params,
        headers={"content-type": content_type},
        timeout=120,
    )


def decoded(r: httpx.Response) -> Image.Image:
    assert r.status_code == 200, r.text
    return Image.open(io.BytesIO(r.content))


def upscale_all(srv: Server, images: list[bytes], model: str = "srresnet-x2") -> list[httpx.Response]:
    """Upload every image at once (PNG bytes), each on its own connection."""

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=300) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        f"{srv.url}/upscale",
                        content=data,
                        params={"model": model},
                        headers={"content-type": "image/png"},
                    )
                    for data in images
                )
            )

    return asyncio.run(burst())


PHOTO = Image.fromarray(skimage.data.coffee()).crop((40, 30, 40 + 75, 30 + 61))  # odd size, RGB


@pytest.mark.parametrize(
    ("fmt", "media"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")]
)
def test_formats_in_and_out(server: Server, fmt: str, media: str) -> None:
    r = upscale(server, encode(PHOTO, fmt), media, model="srresnet-x2")
    out = decoded(r)
    assert out.format == fmt and out.size == (150, 122) and out.mode == "RGB"  # the input's format by default
    assert r.headers["content-type"] == media
    assert r.headers["x-input-size"] == "75x61" and r.headers["x-output-size"] == "150x122"
    assert r.headers["x-model"] == "srresnet-x2" and r.headers["x-model-version"] == "1"
    as_npy = upscale(server, encode(PHOTO, fmt), media, model="srresnet-x2", format="npy")
    assert np.load(io.BytesIO(as_npy.content)).shape == (122, 150, 3)


def test_multipart_upload_and_default_model(server: Server) -> None:
    r = httpx.post(
        f"{server.url}/upscale",
        files={"file": ("photo.png", encode(PHOTO), "image/png")},
        params={"format": "webp"},
    )
    out = decoded(r)
    # The first upscaler by name serves when none is named.
    assert r.headers["x-model"] == "srgan-x4" and out.size == (300, 244) and out.format == "WEBP"


def test_tiled_equals_untiled(server: Server) -> None:
    """A photo larger than one tile (128 px, overlap 32): the service's tiled answer matches the
    ONNX model run on the whole image in one piece."""
    photo = Image.fromarray(skimage.data.chelsea())  # 451x300: 5x3 tiles
    r = upscale(server, encode(photo), model="srresnet-x2")
    tiled = np.asarray(decoded(r), dtype=np.int16)
    sess = ort.InferenceSession(
        str(REPO / "models/srresnet-x2/1/model.onnx"), providers=["CPUExecutionProvider"]
    )
    whole = sess.run(None, {"image": np.asarray(photo)[None]})[0][0].astype(np.int16)
    diff = np.abs(tiled - whole)
    assert diff.max() <= 2 and (diff > 0).mean() < 0.001, (diff.max(), (diff > 0).mean())


def test_alpha_gray_palette_and_orientation(server: Server) -> None:
    rgba = PHOTO.convert("RGBA")
    alpha = np.zeros((61, 75), np.uint8)
    alpha[:, 40:] = 255
    rgba.putalpha(Image.fromarray(alpha))
    out = decoded(upscale(server, encode(rgba), model="srresnet-x2"))
    assert out.mode == "RGBA" and out.size == (150, 122)
    out_alpha = np.asarray(out.getchannel("A"))
    assert out_alpha[:, :70].max() < 20 and out_alpha[:, 90:].min() > 235  # transparency kept where it was

    gray = decoded(upscale(server, encode(PHOTO.convert("L")), model="srresnet-x2"))
    assert gray.mode == "L" and gray.size == (150, 122)

    palette = decoded(upscale(server, encode(PHOTO.convert("P")), model="srresnet-x2"))
    assert palette.mode == "RGB" and palette.size == (150, 122)

    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    rotated = decoded(upscale(server, encode(PHOTO, "JPEG", exif=exif), "image/jpeg", model="srresnet-x2"))
    assert rotated.size == (122, 150)  # upright: width and height swapped


@pytest.mark.parametrize(
    ("data", "content_type", "params", "status", "message"),
    [
        (b"garbage", "image/png", {}, 400, "not a readable image"),
        (b"", "image/png", {}, 400, "the body is empty"),
        (
            b"hello",
            "text/plain",
            {},
            415,
            "Content-Type 'text/plain' is not accepted; send one of: image/png",
        ),
        (b"hello", "", {}, 415, "is not accepted"),
        (encode(PHOTO)[:200], "image/png", {}, 400, "corrupt or truncated"),
        (encode(PHOTO), "image/png", {"model": "nope"}, 404, "unknown model 'nope'; upscale models served"),
        (encode(PHOTO), "image/png", {"model": "digits"}, 400, "is a generate model"),
        (
            encode(PHOTO),
            "image/png",
            {"model": "../models/srresnet-x2"},
            400,
            "a model name is 1-64 characters",
        ),
        (encode(PHOTO), "image/png", {"format": "bmp"}, 422, "format"),
        (encode(Image.new("L", (1100, 1000))), "image/png", {}, 413, "1100x1000 = 1100000 pixels"),
        (encode(PHOTO, "GIF"), "image/png", {}, 400, "not PNG, JPEG or WebP"),
    ],
)
def test_bad_uploads(
    server: Server, data: bytes, content_type: str, params: dict[str, str], status: int, message: str
) -> None:
    r = upscale(server, data, content_type, **params)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]["message"]
    assert httpx.get(f"{server.url}/readyz").status_code == 200


def test_animated_and_formless_multipart(server: Server) -> None:
    frames = [PHOTO, PHOTO.rotate(90)]
    animated = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:])
    r = upscale(server, animated, "image/webp")
    assert r.status_code == 400 and "animated" in r.json()["error"]["message"]
    r = httpx.post(f"{server.url}/upscale", files={"other": ("a.png", encode(PHOTO), "image/png")})
    assert r.status_code == 400 and "field named 'file'" in r.json()["error"]["message"]


def test_tiles_of_concurrent_requests_share_batches(make_server: Callable[..., Server]) -> None:
    # No bound in time on the queue: 6 uploads of 4 tiles are 3 batches of 8 tiles, seconds of work
    # on a slow machine, and this test is about the batches, not the bound.
    srv = make_server(["srresnet-x2"], max_batch_tiles=8, max_queue_ms=0)
    data = encode(Image.fromarray(skimage.data.chelsea()).crop((0, 0, 200, 150)))  # 2x2 tiles each

    responses = upscale_all(srv, [data] * 6)
    assert all(r.status_code == 200 for r in responses)
    assert len({r.content for r in responses}) == 1  # the same image, the same bytes, whatever the batch
    tiles = srv.metric("gan_batch_size_units_sum", model="srresnet-x2")
    batches = srv.metric("gan_batch_size_units_count", model="srresnet-x2")
    assert tiles == 6 * 4 and batches < 6 * 2  # fewer batches than tile rows: requests shared them
    assert srv.metric("gan_pixels_upscaled_total", model="srresnet-x2") == 6 * 400 * 300


def test_small_images_of_any_size_share_one_queue_and_its_batches(make_server: Callable[..., Server]) -> None:
    """Images smaller than a tile are mirrored out to the tile, so every tile has the model's one
    shape: images of different small sizes batch together (each size used to get a queue of its
    own, never freed and never warmed up), and each answer is cropped to its own size."""
    srv = make_server(["srresnet-x2"], max_batch_tiles=4, concurrent_batches=1, max_batch_delay_ms=200)
    photo = skimage.data.astronaut()
    sizes = [(20, 13), (50, 41), (7, 90), (128, 3)]
    images = [photo[100 : 100 + h, 150 : 150 + w] for w, h in sizes]

    sess = ort.InferenceSession(
        str(REPO / "models/srresnet-x2/1/model.onnx"), providers=["CPUExecutionProvider"]
    )
    answers = upscale_all(srv, [encode(Image.fromarray(image)) for image in images])
    for (w, h), image, r in zip(sizes, images, answers, strict=True):
        out = np.asarray(decoded(r))
        assert out.shape == (2 * h, 2 * w, 3)
        # Each is one tile: exactly the model's output for the image mirrored out to the tile,
        # cropped back to the image's own size.
        alone = sess.run(None, {"image": pad_to_tile(image, 128)[None]})[0][0]
        assert np.array_equal(out, alone[: 2 * h, : 2 * w])
    tiles = srv.metric("gan_batch_size_units_sum", model="srresnet-x2")
    batches = srv.metric("gan_batch_size_units_count", model="srresnet-x2")
    assert tiles == len(sizes) and batches < len(sizes)


def test_the_tiles_of_an_image_are_queued_before_a_batch_is_cut(make_server: Callable[..., Server]) -> None:
    """The decode gate stays held until every tile row of an image is queued, so the lane cuts
    whole images: 6 images of 2 rows of 2 tiles, on one lane at 4 tiles a batch, run as 6 full
    batches. When the rows were queued after the gate opened, the lane could cut one row alone."""
    srv = make_server(
        ["srresnet-x2"],
        max_batch_tiles=4,
        concurrent_batches=1,
        max_batch_delay_ms=1000,
        # one lane on a busy 2-core machine: never the deadline, never the queue's bound in time
        default_deadline_ms=300_000,
        max_queue_ms=300_000,
    )
    data = encode(Image.fromarray(skimage.data.astronaut()[:150, :200]))  # 128-px tiles, overlap 32: 2x2

    assert all(decoded(r).size == (400, 300) for r in upscale_all(srv, [data] * 6))
    assert srv.metric("gan_batch_size_units_sum", model="srresnet-x2") == 24
    assert srv.metric("gan_batch_size_units_count", model="srresnet-x2") == 6


def test_a_thin_strip_that_padding_would_make_too_large_is_refused(
    make_server: Callable[..., Server],
) -> None:
    """A side shorter than a tile is padded to it before the output is blended at that size: the
    padded size counts against max_input_pixels (a 20x2,000 strip would be 128x2,000)."""
    srv = make_server(["srresnet-x2"], max_input_pixels=100_000)
    strip = encode(Image.fromarray(skimage.data.astronaut()[:20, :500]).resize((2000, 20)))
    r = upscale(srv, strip, model="srresnet-x2")
    assert r.status_code == 413 and "padded" in r.json()["error"]["message"], r.text
    assert decoded(upscale(srv, encode(Image.fromarray(skimage.data.astronaut()[:200, :400])))).size == (
        800,
        400,
    )


def test_wrong_methods_and_malformed_forms_are_4xx(server: Server) -> None:
    """The routes are answered by their own handlers: those check the method (405 with Allow, HEAD
    answered as GET) and a malformed multipart form is the client's mistake (400), as through
    FastAPI."""
    r = httpx.get(f"{server.url}/upscale")
    assert (
        r.status_code == 405
        and r.headers["allow"] == "POST"
        and r.json()["error"]["code"] == "method_not_allowed"
    )
    assert httpx.post(f"{server.url}/healthz").status_code == 405
    assert httpx.get(f"{server.url}/generate").status_code == 405
    head = httpx.head(f"{server.url}/v1/models")
    assert head.status_code == 200 and head.content == b""
    r = httpx.post(
        f"{server.url}/upscale", content=b"--x\r\n", headers={"content-type": "multipart/form-data"}
    )
    assert r.status_code == 400 and "multipart" in r.json()["error"]["message"], r.text
    two = [("file", ("a.png", encode(PHOTO), "image/png")), ("file", ("b.png", encode(PHOTO), "image/png"))]
    r = httpx.post(f"{server.url}/upscale", files=two)
    assert r.status_code == 400 and "multipart" in r.json()["error"]["message"], r.text
    assert "Traceback" not in server.log()
