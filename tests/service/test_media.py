"""The media-type table, content negotiation and the deadline header, on their own."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import contract
from contract.errors import InvalidRequest
from contract.media import JSON, media_type, negotiate, parse_accept, sniff_format
from service.api.lifetime import MAX_DEADLINE_MS, deadline_from_header

IMAGES = ["image/png", "image/jpeg", "image/webp", "application/x-npy"]


@pytest.mark.parametrize(
    ("accept", "offers", "chosen"),
    [
        (None, [JSON, *IMAGES], JSON),
        ("", [JSON], JSON),
        ("*/*", [JSON, *IMAGES], JSON),
        ("image/png", [JSON, *IMAGES], "image/png"),
        ("image/png", [JSON], None),
        ("application/json, image/png", [JSON, *IMAGES], JSON),
        ("image/png, application/json", [JSON, *IMAGES], "image/png"),
        ("image/png;q=0.5, application/json", [JSON, *IMAGES], JSON),
        ("image/*", [JSON, "image/jpeg", "image/png"], "image/jpeg"),
        # the most specific range decides an offer's q: image/png is excluded, other images are not
        ("image/*, image/png;q=0", [JSON, "image/png", "image/webp"], "image/webp"),
        ("*/*;q=0", [JSON], None),
        ("text/html", [JSON], None),
        ("IMAGE/PNG ; Q=0.7, application/json;q=0.6", [JSON, "image/png"], "image/png"),
        ("image/png;q=nonsense, application/json;q=0.5", [JSON, "image/png"], "image/png"),
        (" , ,application/json", [JSON], JSON),
    ],
)
def test_negotiate(accept: str | None, offers: list[str], chosen: str | None) -> None:
    assert negotiate(accept, offers) == chosen


def test_parse_accept_keeps_order_and_clamps_q() -> None:
    assert parse_accept("a/b;q=2, c/d;level=1;q=0.3, e/f;q=-1") == [("a/b", 1.0), ("c/d", 0.3), ("e/f", 0.0)]


def test_media_type_and_sniffing() -> None:
    assert media_type("Image/PNG; charset=binary") == "image/png"
    assert media_type(None) == ""
    assert sniff_format(b"\x89PNG\r\n\x1a\n....") == "png"
    assert sniff_format(b"\xff\xd8\xff\xe0") == "jpeg"
    assert sniff_format(b"RIFF\0\0\0\0WEBPVP8 ") == "webp"
    assert sniff_format(b"GIF89a") is None


@pytest.mark.parametrize(
    "value", ["soon", "", " ", "-5", "0", "1.5", "²", "١٢", "٣", str(MAX_DEADLINE_MS + 1)]
)
def test_bad_deadlines_are_a_clear_400(value: str) -> None:
    with pytest.raises(InvalidRequest, match="X-Deadline-Ms must be an integer"):
        deadline_from_header(value, default_ms=1000)


def test_deadlines() -> None:
    now = time.monotonic()
    assert now + 0.9 < deadline_from_header(None, default_ms=1000) < now + 1.1
    assert now + 0.04 < deadline_from_header(" 50 ", default_ms=1000) < now + 0.2


def test_the_client_shares_the_table_without_the_server_dependencies() -> None:
    import subprocess
    import sys

    code = (
        "import sys, client, client.cli, client.inspect, client.upscale_job; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('service', 'pydantic', 'numpy', 'PIL', 'fastapi', 'onnxruntime')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # the tables come from `contract`, never from the server

    # and `contract` itself is the standard library only
    modules = ", ".join(
        f"contract.{p.stem}" for p in Path(contract.__file__).parent.glob("*.py") if p.stem != "__init__"
    )
    code = (
        f"import sys; before = set(sys.modules); import {modules}; "
        "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['contract']"
