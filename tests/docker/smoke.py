"""Smoke client for a running container stack (standard library only, bounded in time):

    python tests/docker/smoke.py --service http://127.0.0.1:8000 [--prometheus http://127.0.0.1:9090]

Waits for /readyz, checks a /generate and an /upscale, then (when given) that Prometheus has
scraped the service: its query API returns our gan_model_info series. Exit 0 when all pass."""

from __future__ import annotations

import argparse
import base64
import json
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable
from typing import Any


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def wait_for(what: str, check: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    last = ""
    while time.monotonic() < deadline:
        try:
            if check():
                print(f"ok: {what}")
                return
        except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
            last = str(e)
        time.sleep(1)
    raise SystemExit(f"FAILED: {what} (not within {seconds:.0f} s) {last}")


def tiny_png(width: int, height: int) -> bytes:
    """An RGB gradient PNG, written with zlib (no imaging library needed)."""
    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in ((x * 8) % 256, (y * 8) % 256, 128))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def main() -> int:
    args = argparse.ArgumentParser()
    args.add_argument("--service", required=True)
    args.add_argument("--prometheus")
    args.add_argument("--ready-seconds", type=float, default=180)
    opts = args.parse_args()
    service = opts.service.rstrip("/")

    wait_for("/readyz is 200", lambda: http("GET", f"{service}/readyz")[0] == 200, opts.ready_seconds)

    body = json.dumps({"model": "digits-conditional", "n": 2, "seed": 3, "labels": [4, 5]}).encode()
    status, _, data = http("POST", f"{service}/generate", body, {"Content-Type": "application/json"})
    assert status == 200, (status, data[:300])
    answer = json.loads(data)
    images = [base64.b64decode(i["data"]) for i in answer["images"]]
    assert [i["label"] for i in answer["images"]] == [4, 5] and all(png_size(i) == (32, 32) for i in images)
    print("ok: POST /generate gave 2 PNGs of 32x32 with the labels asked for")

    status, headers, data = http(
        "POST", f"{service}/upscale?model=srresnet-x2", tiny_png(24, 16), {"Content-Type": "image/png"}
    )
    assert status == 200, (status, data[:300])
    assert png_size(data) == (48, 32), png_size(data)
    version = headers.get("x-model-version")
    print(f"ok: POST /upscale gave a 48x32 PNG ({len(data)} bytes, model version {version})")

    # The playground's files are package data: a non-editable install (the image's) must hold them.
    status, _, data = http("GET", f"{service}/")
    assert status == 200 and b"/playground/playground.js" in data, (status, data[:300])
    status, _, script = http("GET", f"{service}/playground/playground.js")
    assert status == 200 and b"import" in script, (status, script[:300])
    print("ok: GET / served the playground page and its script")

    if opts.prometheus:
        prometheus = opts.prometheus.rstrip("/")

        def query(expr: str) -> list[dict[str, Any]]:
            """Prometheus's instant query result: empty until a scrape has the series."""
            status, _, data = http(
                "GET", f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
            )
            return list(json.loads(data)["data"]["result"]) if status == 200 else []

        def scraped() -> bool:
            result = query('gan_model_info{model="digits-conditional"}')
            return bool(result) and result[0]["metric"].get("job") == "gan-serving"

        def saw_generate() -> bool:  # the request above shows up at the next scrape, not at once
            result = query('sum(gan_requests_total{endpoint="/generate"})')
            return bool(result) and float(result[0]["value"][1]) >= 1

        wait_for("Prometheus has scraped the service (gan_model_info in its query API)", scraped, 90)
        wait_for("Prometheus saw the /generate request", saw_generate, 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
