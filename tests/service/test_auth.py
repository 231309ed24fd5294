"""API keys: off by default; with keys, every inference route needs one (the hot path too), in
X-API-Key or as a Bearer token; health and metrics stay open unless configured; bad key settings
stop the server at start-up with a clear message."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.live_server import REPO, Server

KEY_A = "k-" + "a" * 30
KEY_B = "k-" + "b" * 30
BODY = {"model": "digits", "n": 1, "seed": 1}


def test_keys_guard_the_api_but_not_health_or_metrics(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# ops team\n{KEY_B}\n")
    srv = make_server(["digits"], api_keys=KEY_A, api_keys_file=keys_file)
    url = srv.url
    for headers in (
        {},
        {"X-API-Key": "wrong-key-of-enough-length"},
        {"X-API-Key": KEY_A[:-1]},
        {"Authorization": "Basic " + KEY_A},
    ):
        r = httpx.post(f"{url}/generate", json=BODY, headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"]["code"] == "unauthorized" and "X-API-Key" in r.json()["error"]["message"]
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.headers["x-request-id"]  # still logged and counted like any answer
    assert httpx.get(f"{url}/v1/models").status_code == 401
    assert (
        httpx.post(f"{url}/upscale", content=b"x", headers={"content-type": "image/png"}).status_code == 401
    )
    assert httpx.post(f"{url}/generate", json=BODY, headers={"X-API-Key": KEY_A}).status_code == 200
    assert (
        httpx.post(f"{url}/generate", json=BODY, headers={"Authorization": f"Bearer {KEY_B}"}).status_code
        == 200
    )
    assert httpx.get(f"{url}/v1/models", headers={"X-API-Key": KEY_B}).status_code == 200
    for open_path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert httpx.get(f"{url}{open_path}").status_code == 200, open_path
    assert srv.metric("gan_requests_total", endpoint="/generate", status="401") == 4


def test_health_and_metrics_can_be_guarded_too(make_server: Callable[..., Server]) -> None:
    srv = make_server(["digits"], api_keys=KEY_A, auth_health="true", auth_metrics="true")
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(f"{srv.url}{path}").status_code == 401, path
        assert httpx.get(f"{srv.url}{path}", headers={"X-API-Key": KEY_A}).status_code == 200, path


def test_no_keys_no_authentication(server: Server) -> None:
    assert httpx.post(f"{server.url}/generate", json=BODY).status_code == 200


def test_bad_key_settings_stop_the_server(tmp_path: Path) -> None:
    for env, message in (
        ({"GAN_SERVE_API_KEYS": "short"}, "shorter than 16 characters"),
        ({"GAN_SERVE_API_KEYS_FILE": str(tmp_path / "missing")}, "cannot read the API keys file"),
    ):
        run = subprocess.run(
            [sys.executable, "-m", "service", "--models", str(REPO / "models"), "--port", "0"],
            cwd=REPO,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 2 and message in run.stderr, run.stderr
