"""GET /v1/models shows each version's interface, on a real server: one model name whose version 1
is an unconditional generator and version 2 a conditional one (bundled models' files, renamed),
the published one read from disk, the loaded one from what serves."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import httpx

from model_repository.manifest import dump_manifest
from model_repository.repository import publish_version
from tests.live_server import REPO, start_server

UNCONDITIONAL = {
    "task": "generate",
    "classes": 0,
    "class_names": [],
    "channels": 1,
    "resolution": [32, 32],
    "latent_size": 64,
    "style": False,
}
CONDITIONAL = UNCONDITIONAL | {"classes": 10, "class_names": [str(d) for d in range(10)]}


def publish_as(repo: Path, bundled: str, name: str, version: int) -> None:
    """A bundled model's version 1, published as NAME version `version` (its manifest says so)."""

    def write(staging: Path, number: int) -> None:
        for path in (REPO / "models" / bundled / "1").iterdir():
            shutil.copy2(path, staging / path.name)
        manifest = json.loads((staging / "manifest.json").read_text())
        manifest["name"], manifest["version"] = name, number
        (staging / "manifest.json").write_text(dump_manifest(manifest))

    publish_version(repo, name, write, version)


def listing(url: str) -> dict[str, Any]:
    r = httpx.get(f"{url}/v1/models", timeout=30)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_models_lists_every_versions_interface(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    publish_as(repo, "digits", "my-gan", 1)
    publish_as(repo, "digits-conditional", "my-gan", 2)
    srv = start_server(tmp_path, repo, repository_poll_s=0.2)
    try:
        body = listing(srv.url)
        state = body["versions"]["my-gan"]
        assert state["published"] == [1, 2] and state["loaded"] == [2]  # latest:1
        # Version 1 is not loaded: its interface comes from its manifest on disk.
        assert state["interfaces"] == {"1": UNCONDITIONAL, "2": CONDITIONAL}

        # What was there before is unchanged: each loaded version's manifest and serving state.
        (served,) = body["models"]
        assert served["name"] == "my-gan" and served["version"] == 2 and served["default"]
        assert served["generator"]["classes"]["count"] == 10 and served["kind"] == "generate"
        assert {"policy", "published", "loaded", "default", "canary", "failed"} <= state.keys()

        # A version 3 like version 1 serves; version 2, now only published, is read from disk.
        publish_as(repo, "digits", "my-gan", 3)
        deadline = time.monotonic() + 60
        while listing(srv.url)["versions"]["my-gan"]["loaded"] != [3]:
            assert time.monotonic() < deadline, "version 3 not served within 60 s"
            time.sleep(0.1)
        interfaces = listing(srv.url)["versions"]["my-gan"]["interfaces"]
        assert interfaces == {"1": UNCONDITIONAL, "2": CONDITIONAL, "3": UNCONDITIONAL}

        shutil.rmtree(repo / "my-gan" / "2")  # gone from the repository: gone from the listing
        deadline = time.monotonic() + 30
        while "2" in listing(srv.url)["versions"]["my-gan"]["interfaces"]:
            assert time.monotonic() < deadline, "version 2 still listed 30 s after its removal"
            time.sleep(0.1)
    finally:
        srv.stop()


def test_style_and_upscaler_interfaces(make_server: Any) -> None:
    """The bundled models' interfaces: a style model's ws shape and crossover layers, an
    upscaler's scale and family."""
    srv = make_server(["digits-style", "srgan-x4"])
    versions = listing(srv.url)["versions"]
    assert versions["digits-style"]["interfaces"]["1"] == CONDITIONAL | {
        "style": True,
        "w_dim": 128,
        "num_ws": 8,
        "style_layers": {"coarse": [0, 4], "middle": [4, 6], "fine": [6, 8]},
    }
    assert versions["srgan-x4"]["interfaces"] == {
        "1": {"task": "upscale", "channels": 3, "scale": 4, "family": {"name": "photo-x4", "role": "detail"}}
    }
