"""Faults at start-up: a model whose file is corrupt, or missing, or whose manifest is broken, is
reported (log, /readyz, /v1/models, metrics) and the other models still serve."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live_server import REPO, Server, start_server


@pytest.fixture
def broken_repo_server(tmp_path: Path) -> Iterator[Server]:
    repo = tmp_path / "models"
    repo.mkdir()
    (repo / "digits").symlink_to(REPO / "models" / "digits", target_is_directory=True)
    for name in ("corrupt", "missing", "bad-manifest"):
        shutil.copytree(REPO / "models" / "digits-conditional", repo / name)
    (repo / "corrupt" / "1" / "model.onnx").write_bytes(b"\x08\x07 not an onnx file" * 100)
    (repo / "missing" / "1" / "model.onnx").unlink()
    (repo / "bad-manifest" / "1" / "manifest.json").write_text('{"name": "bad-manifest", "task": ')
    srv = start_server(tmp_path, repo, degraded_ok=True)
    yield srv
    srv.stop()


def test_broken_models_are_reported_and_the_others_serve(broken_repo_server: Server) -> None:
    url = broken_repo_server.url
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "degraded" and list(body["models"]) == ["digits"]
    assert sorted(body["failed"]) == ["bad-manifest", "corrupt", "missing"]
    assert all(reason.startswith("version 1: ") for reason in body["failed"].values())
    assert httpx.get(f"{url}/v1/models").json()["failed"] == body["failed"]
    for name in ("corrupt", "missing", "bad-manifest"):
        assert broken_repo_server.metric("gan_model_load_failed", model=name) == 1
        assert f"not serving {name}" in broken_repo_server.log()
    r = httpx.post(f"{url}/generate", json={"model": "digits", "seed": 1})
    assert r.status_code == 200 and len(r.json()["images"]) == 1
    gone = httpx.post(f"{url}/generate", json={"model": "corrupt", "seed": 1})
    assert gone.status_code == 404 and "generate models served: digits" in gone.json()["error"]["message"]
    assert httpx.get(f"{url}/healthz").status_code == 200  # alive, only not fully ready
