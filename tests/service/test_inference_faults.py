"""An inference failure fails only its own batch's requests with a 500, and the server goes on.

The fault is real: a copy of the conditional digits generator whose manifest claims an eleventh
class. The service accepts label 10 (the manifest allows it) and ONNX Runtime then fails on the
embedding lookup, exactly as a model that breaks on some inputs would."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.live_server import REPO, Server, start_server


@pytest.fixture
def faulty_server(tmp_path: Path) -> Iterator[Server]:
    repo = tmp_path / "models"
    shutil.copytree(REPO / "models" / "digits-conditional", repo / "faulty")
    manifest_path = repo / "faulty" / "1" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["name"] = "faulty"
    manifest["generator"]["classes"] = {
        "count": 11,
        "names": [*manifest["generator"]["classes"]["names"], "ten"],
    }
    manifest_path.write_text(json.dumps(manifest))
    # one request per batch, so which requests share the failing batch is not left to timing
    srv = start_server(tmp_path, repo, max_batch_size=1)
    yield srv
    srv.stop()


def test_a_failing_batch_fails_alone_and_the_server_goes_on(faulty_server: Server) -> None:
    url = faulty_server.url

    def generate(label: int) -> httpx.Response:
        return httpx.post(
            f"{url}/generate", json={"model": "faulty", "seed": label, "labels": label}, timeout=30
        )

    labels = [3, 10, 4, 10, 5, 6, 10, 7] * 3
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(generate, labels))
    for label, r in zip(labels, answers, strict=True):
        if label == 10:
            assert r.status_code == 500, r.text
            error = r.json()["error"]
            assert error["code"] == "inference_failed" and "Traceback" not in r.text
            assert "see the server log" in error["message"] and "ONNXRuntime" not in r.text
        else:
            assert r.status_code == 200, r.text
    assert faulty_server.metric("gan_requests_total", endpoint="/generate", status="500") == 9
    assert "model faulty: inference failed on a batch of 1 rows" in faulty_server.log()
    # the model and the server go on
    assert httpx.get(f"{url}/readyz").status_code == 200
    assert generate(2).status_code == 200
