"""Hostile and unusual uploads to /upscale, each with a defined answer: a 4xx with a clear message,
or a correct result where the format is legitimately supported. Memory stays bounded and the
server stays ready throughout. The corpus is made here, with PIL and by hand."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.live_server import Server, model_subset, start_server

MAX_PIXELS = 256 * 256


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    channels = {"RGB": 3, "L": 1, "CMYK": 4, "RGBA": 4}[mode]
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int, idat: bytes = b"") -> bytes:
    """A PNG whose header claims width x height (8-bit RGB), with the given (or no) pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header is rewritten to claim width x height."""
    data = bytearray(encode(noise((16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")  # baseline frame: marker, length (2), precision (1), height, width
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def webp_claiming(width: int, height: int) -> bytes:
    """A real small lossless WebP whose VP8L header is rewritten to claim width x height."""
    data = bytearray(encode(noise((16, 16)), "WEBP", lossless=True))
    assert data[12:16] == b"VP8L" and data[20] == 0x2F
    bits = struct.unpack("<I", data[21:25])[0] & ~((1 << 28) - 1)  # keep alpha and version bits
    data[21:25] = struct.pack("<I", bits | (width - 1) | ((height - 1) << 14))
    return bytes(data)


def truncated(data: bytes) -> bytes:
    """The first two thirds of a file: the header is whole, the pixel data is cut."""
    return data[: len(data) * 2 // 3]


def zeros_png(side: int) -> bytes:
    """A side x side black PNG: a few KB that decode to side^2 * 3 bytes (a compression bomb)."""
    return encode(Image.new("RGB", (side, side)), "PNG", optimize=True)


def animated(fmt: str) -> bytes:
    frames = [noise((12, 12)), Image.new("RGB", (12, 12), (255, 0, 0))]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def rgb16_png(width: int, height: int) -> bytes:
    rows = b"".join(b"\x00" + bytes(range(6)) * width for _ in range(height))  # filter 0, RGB 16-bit
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


PHOTO = encode(noise((20, 12)))

# (case, body, content type, status, what the message or the result must show)
REFUSED = [
    ("empty body", b"", "image/png", 400, "the body is empty"),
    ("truncated PNG", PHOTO[:60], "image/png", 400, "corrupt or truncated"),
    ("truncated JPEG", truncated(encode(noise((64, 64)), "JPEG")), "image/jpeg", 400, "corrupt or truncated"),
    (
        "JPEG cut inside its header",
        encode(noise((64, 64)), "JPEG")[:120],
        "image/jpeg",
        400,
        "not a readable image",
    ),
    ("random bytes", bytes(range(256)) * 4, "image/png", 400, "not a readable image"),
    (
        "PNG magic then garbage",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 200,
        "image/png",
        400,
        "not a readable image",
    ),
    ("a GIF", encode(noise((8, 8)).convert("P"), "GIF"), "image/png", 400, "not PNG, JPEG or WebP"),
    ("a BMP", encode(noise((8, 8)), "BMP"), "image/png", 400, "not PNG, JPEG or WebP"),
    ("PNG claiming 100000x100000", png_claiming(100_000, 100_000), "image/png", 413, "100000x100000"),
    ("JPEG claiming 60000x60000", jpeg_claiming(60_000, 60_000), "image/jpeg", 413, "60000x60000"),
    ("WebP claiming 16384x16384", webp_claiming(16_384, 16_384), "image/webp", 413, "16384x16384"),
    ("PNG bomb 4096x4096 of zeros", zeros_png(4096), "image/png", 413, "4096x4096"),
    ("PNG claiming 0x0", png_claiming(0, 0), "image/png", 400, ""),
    (
        "PNG with a corrupt pixel stream",
        png_claiming(16, 16, zlib.compress(b"\x00" * 10)),
        "image/png",
        400,
        "",
    ),
    ("animated PNG", animated("PNG"), "image/png", 400, "animated images are not supported"),
    ("animated WebP", animated("WEBP"), "image/webp", 400, "animated images are not supported"),
]

# (case, body, content type, expected output (width, height), expected output mode)
SERVED = [
    (
        "a JPEG sent as image/png (decoded by content)",
        encode(noise((10, 8)), "JPEG"),
        "image/png",
        (20, 16),
        "RGB",
    ),
    (
        "16-bit gray PNG",
        encode(Image.fromarray(np.arange(96, dtype=np.uint16).reshape(8, 12) * 600)),
        "image/png",
        (24, 16),
        "I;16",  # 16 bits in, 16 bits out
    ),
    ("16-bit RGB PNG", rgb16_png(12, 8), "image/png", (24, 16), "RGB"),  # Pillow reads 48-bit as 8
    ("CMYK JPEG", encode(noise((12, 8), "CMYK"), "JPEG"), "image/jpeg", (24, 16), "RGB"),
    ("1x1 PNG", encode(noise((1, 1))), "image/png", (2, 2), "RGB"),
    ("small highly compressed PNG", zeros_png(200), "image/png", (400, 400), "RGB"),
    ("1-bit PNG", encode(noise((16, 8)).convert("1")), "image/png", (32, 16), "L"),
]


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("hostile")
    srv = start_server(tmp, model_subset(tmp, ["srresnet-x2"]), max_input_pixels=MAX_PIXELS)
    yield srv
    srv.stop()


def rss_mb(server: Server) -> float:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def post(server: Server, body: bytes, content_type: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/upscale", content=body, headers={"content-type": content_type}, timeout=60
    )


@pytest.mark.parametrize(
    ("case", "body", "content_type", "status", "message"), REFUSED, ids=[c[0] for c in REFUSED]
)
def test_refused_with_a_clear_4xx(
    hostile_server: Server, case: str, body: bytes, content_type: str, status: int, message: str
) -> None:
    r = post(hostile_server, body, content_type)
    assert r.status_code == status, (case, r.text)
    error = r.json()["error"]
    assert message in error["message"] and error["code"] and "Traceback" not in r.text
    assert httpx.get(f"{hostile_server.url}/readyz").status_code == 200


@pytest.mark.parametrize(("case", "body", "content_type", "size", "mode"), SERVED, ids=[c[0] for c in SERVED])
def test_legitimate_oddities_are_served(
    hostile_server: Server, case: str, body: bytes, content_type: str, size: tuple[int, int], mode: str
) -> None:
    r = post(hostile_server, body, content_type)
    assert r.status_code == 200, (case, r.text)
    out = Image.open(io.BytesIO(r.content))
    assert out.size == size and out.mode == mode, (case, out.size, out.mode)


def test_memory_stays_bounded_under_repeated_hostile_uploads(hostile_server: Server) -> None:
    """Every refused case 5 times over, and the bombs 20 times more: resident memory grows by less
    than 100 MB (a single decoded 4096x4096 bomb alone would be 48 MB, per upload)."""
    for _, body, content_type, _, _ in REFUSED:
        post(hostile_server, body, content_type)
    before = rss_mb(hostile_server)
    bombs = [c for c in REFUSED if "claiming" in c[0] or "bomb" in c[0]]
    for _ in range(5):
        for _, body, content_type, _, _ in REFUSED:
            post(hostile_server, body, content_type)
    for _ in range(20):
        for _, body, content_type, status, _ in bombs:
            assert post(hostile_server, body, content_type).status_code == status
    assert rss_mb(hostile_server) - before < 100
    assert httpx.get(f"{hostile_server.url}/readyz").status_code == 200
