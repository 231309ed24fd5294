"""Models in and out while serving, on a real server and a repository of the test's own: new
versions noticed (polling, SIGHUP), removed ones unloaded, broken ones reported while the old one
serves, versions side by side and pinned, and the admin API (load, unload, rollback, canary)."""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from bench.swap_bench import publish
from model_repository.manifest import dump_manifest
from model_repository.repository import publish_version
from service.lifecycle.versions import canary_point
from tests.live_server import REPO, Server, start_server

ADMIN_KEY = "admin-key-for-the-versions-tests"
ADMIN = {"X-API-Key": ADMIN_KEY}
# Generous: a server warming up a new version beside the test's load may take a while to answer.
post = functools.partial(httpx.post, timeout=60)
get = functools.partial(httpx.get, timeout=60)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def generate(srv: Server, model: str, seed: int = 3) -> tuple[int, bytes]:
    """(version, image bytes) of /generate's answer."""
    r = post(f"{srv.url}/generate", json={"model": model, "seed": seed, "format": "npy"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["version"], base64.b64decode(r.json()["images"][0]["data"])


def states(srv: Server) -> dict[str, Any]:
    """model name -> [(version, default)] of the loaded versions."""
    out: dict[str, Any] = {}
    for m in get(f"{srv.url}/v1/models").json()["models"]:
        out.setdefault(m["name"], []).append((m["version"], m["default"]))
    return out


def default_version(srv: Server, name: str = "digits") -> int | None:
    return next((v for v, default in states(srv).get(name, []) if default), None)


def corrupt_version(repo: Path, version: int) -> None:
    """A version whose model file does not match its manifest's sha256."""

    def write(staging: Path, v: int) -> None:
        for path in (REPO / "models" / "digits" / "1").iterdir():
            shutil.copy2(path, staging / path.name)
        manifest = json.loads((staging / "manifest.json").read_text())
        manifest["version"] = v
        (staging / "manifest.json").write_text(dump_manifest(manifest))
        size = (staging / "model.onnx").stat().st_size
        (staging / "model.onnx").write_bytes(bytes(size))

    publish_version(repo, "digits", write, version)


def test_new_versions_are_served_without_a_restart_and_removed_ones_unloaded(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    publish(repo, 1)
    srv = start_server(tmp_path, repo, repository_poll_s=0.2)
    try:
        version, first = generate(srv, "digits")
        assert version == 1
        publish(repo, 2)  # the digits-conditional generator's files: other images
        wait_for(lambda: default_version(srv) == 2, "version 2 served")
        wait_for(lambda: [v for v, _ in states(srv)["digits"]] == [2], "version 1 unloaded (latest:1)")
        version, second = generate(srv, "digits")
        assert version == 2 and second != first
        r = post(f"{srv.url}/generate", json={"model": "digits@1", "seed": 3})
        assert r.status_code == 404 and "no version 1 loaded; loaded: 2" in r.json()["error"]["message"]

        shutil.rmtree(repo / "digits" / "2")  # removed: version 1 is the newest published again
        wait_for(lambda: default_version(srv) == 1, "version 1 served again")
        assert generate(srv, "digits") == (1, first)
        assert srv.metric("gan_model_loads_total", model="digits", outcome="loaded") == 3
        assert srv.metric("gan_model_loads_total", model="digits", outcome="unloaded") == 2
        assert srv.metric("gan_model_default_version", model="digits") == 1
    finally:
        srv.stop()
    assert "serving digits version 2" in srv.log() and "unloading digits version 2" in srv.log()


def test_a_broken_version_is_reported_and_the_old_one_serves_until_a_good_one_comes(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    publish(repo, 1)
    srv = start_server(tmp_path, repo, repository_poll_s=0.2)
    try:
        corrupt_version(repo, 2)
        wait_for(
            lambda: "digits" in get(f"{srv.url}/v1/models").json()["failed"],
            "version 2 reported failed",
        )
        models = get(f"{srv.url}/v1/models").json()
        assert models["failed"]["digits"].startswith("version 2: ") and "sha256" in models["failed"]["digits"]
        assert models["versions"]["digits"]["failed"].keys() == {"2"}
        assert models["versions"]["digits"]["loaded"] == [1]
        assert get(f"{srv.url}/readyz").status_code == 200  # the old version serves: still ready
        assert generate(srv, "digits")[0] == 1
        time.sleep(1.0)  # five more polls: an unchanged broken version is not tried again
        assert srv.metric("gan_model_loads_total", model="digits", outcome="failed") == 1
        assert srv.metric("gan_model_load_failed", model="digits") == 0  # a version serves

        publish(repo, 3)
        wait_for(lambda: default_version(srv) == 3, "version 3 served")
        assert get(f"{srv.url}/v1/models").json()["versions"]["digits"]["loaded"] == [3]
    finally:
        srv.stop()
    assert "not serving digits version 2: " in srv.log()


def test_sighup_syncs_at_once_when_polling_is_off(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    publish(repo, 1)
    srv = start_server(tmp_path, repo, repository_poll_s=0, admin_keys=ADMIN_KEY)
    try:
        publish(repo, 2)
        time.sleep(0.5)
        assert default_version(srv) == 1  # no polling
        os.kill(srv.process.pid, signal.SIGHUP)
        wait_for(lambda: default_version(srv) == 2, "version 2 served after SIGHUP")
        assert srv.process.poll() is None  # SIGHUP's default action would have ended it
        # Unloading the policy's only version (latest:1): the next newest is loaded first.
        r = post(f"{srv.url}/v1/models/digits/unload", json={"version": 2}, headers=ADMIN)
        assert r.status_code == 200 and r.json()["loaded"] == [1] and r.json()["default"] == 1
        assert generate(srv, "digits")[0] == 1
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def versions_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """digits 1 and 2 side by side (latest:2), srresnet-x2 1, and the admin API; no polling."""
    tmp = tmp_path_factory.mktemp("versions")
    repo = tmp / "models"
    publish(repo, 1)
    publish(repo, 2)
    shutil.copytree(REPO / "models" / "srresnet-x2" / "1", repo / "srresnet-x2" / "1")
    srv = start_server(tmp, repo, repository_poll_s=0, version_policy="latest:2", admin_keys=ADMIN_KEY)
    yield srv
    srv.stop()


def test_versions_side_by_side_are_pinned_by_name_at_version(versions_server: Server) -> None:
    srv = versions_server
    assert states(srv)["digits"] == [(1, False), (2, True)]
    one, two = generate(srv, "digits@1"), generate(srv, "digits@2")
    assert one[0] == 1 and two[0] == 2 and one[1] != two[1]
    assert generate(srv, "digits") == two
    r = post(f"{srv.url}/generate", json={"model": "digits@1", "seed": 3}, headers={"Accept": "image/png"})
    assert r.headers["X-Model-Version"] == "1"
    for model, status, message in [
        ("digits@9", 404, "has no version 9 loaded; loaded: 1, 2"),
        ("digits@x", 400, "NAME@VERSION"),
        ("digits@0", 400, "NAME@VERSION"),
        ("nope@1", 404, "unknown model 'nope'"),
        ("srresnet-x2@1", 400, "is an upscale model"),
    ]:
        r = post(f"{srv.url}/generate", json={"model": model, "seed": 1})
        assert r.status_code == status and message in r.json()["error"]["message"], (model, r.text)
    png = io.BytesIO()
    Image.new("RGB", (20, 16), (90, 30, 200)).save(png, "PNG")
    r = post(
        f"{srv.url}/upscale?model=srresnet-x2@1",
        content=png.getvalue(),
        headers={"Content-Type": "image/png"},
    )
    assert r.status_code == 200 and r.headers["X-Model-Version"] == "1"
    listing = get(f"{srv.url}/v1/models").json()["versions"]
    assert listing["digits"]["policy"] == "latest:2" and listing["digits"]["loaded"] == [1, 2]
    assert listing["digits"]["published"] == [1, 2] and listing["digits"]["default"] == 2


def test_the_admin_api_is_guarded_and_off_without_a_key(versions_server: Server, server: Server) -> None:
    r = post(f"{server.url}/v1/models/digits/load", json={})
    assert r.status_code == 404 and "GAN_SERVE_ADMIN_KEYS" in r.json()["error"]["message"]
    url = f"{versions_server.url}/v1/models/digits/default"
    assert post(url, json={"version": 1}).status_code == 401
    assert post(url, json={"version": 1}, headers={"X-API-Key": "x" * 32}).status_code == 403
    r = post(f"{versions_server.url}/v1/models/Bad/load", json={}, headers=ADMIN)
    assert r.status_code == 400
    r = post(url, json={"version": 1, "extra": 2}, headers=ADMIN)
    assert r.status_code == 422 and "extra" in r.json()["error"]["message"]
    # The key is checked before the body is read: without one, a malformed body says nothing.
    bad = {"content": b"{not json", "headers": {"Content-Type": "application/json"}}
    assert post(url, **bad).status_code == 401  # type: ignore[arg-type]
    assert post(f"{server.url}/v1/models/digits/default", **bad).status_code == 404  # type: ignore[arg-type]


def test_rollback_canary_unload_and_load(versions_server: Server) -> None:
    srv = versions_server
    admin = lambda path, body: post(f"{srv.url}/v1/models/digits/{path}", json=body, headers=ADMIN)  # noqa: E731
    try:
        # Roll back: unpinned requests get version 1, pinned ones what they pin.
        r = admin("default", {"version": 1})
        assert r.status_code == 200 and r.json()["default"] == 1 and r.json()["rolled_back"]
        assert generate(srv, "digits")[0] == 1 and generate(srv, "digits@2")[0] == 2
        assert srv.metric("gan_model_default_version", model="digits") == 1
        assert admin("default", {"version": None}).json()["default"] == 2

        # A canary: version 1 for a quarter of the seeds, the same seeds every time.
        r = admin("canary", {"version": 1, "share": 0.25})
        assert r.json()["canary"] == {"version": 1, "share": 0.25}
        for seed in range(40):
            expected = 1 if canary_point(seed) < 0.25 else 2
            assert generate(srv, "digits", seed)[0] == expected, seed
        roles = {
            m["version"]: m.get("canary_share")
            for m in get(f"{srv.url}/v1/models").json()["models"]
            if m["name"] == "digits"
        }
        assert roles == {1: 0.25, 2: None}
        assert admin("canary", {"version": None}).json()["canary"] is None

        # Unloaded: pinned requests get 404, and a sync does not bring it back; loaded again: back.
        r = admin("unload", {"version": 1})
        assert r.status_code == 200 and r.json()["loaded"] == [2] and r.json()["unloaded_by_admin"] == [1]
        assert post(f"{srv.url}/generate", json={"model": "digits@1"}).status_code == 404
        sync = post(f"{srv.url}/v1/repository/sync", headers=ADMIN).json()
        assert sync["models"]["digits"]["loaded"] == [2]
        r = admin("load", {"version": 1})
        assert r.status_code == 200 and r.json()["loaded"] == [1, 2] and r.json()["held"] == [1]
        assert generate(srv, "digits@1")[0] == 1

        r = admin("load", {"version": 7})
        assert r.status_code == 404 and "published: 1, 2" in r.json()["error"]["message"]
        r = admin("unload", {"version": 7})
        assert r.status_code == 404 and "loaded: 1, 2" in r.json()["error"]["message"]
    finally:
        admin("default", {"version": None})
        admin("canary", {"version": None})
