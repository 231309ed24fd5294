"""/generate against a real server with the bundled models: formats, determinism, bad input."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.live_server import Server


def post(server: Server, body: dict[str, object], **headers: str | bytes) -> httpx.Response:
    return httpx.post(f"{server.url}/generate", json=body, headers=headers, timeout=30)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "npy"])
def test_every_format(server: Server, fmt: str) -> None:
    r = post(
        server, {"model": "digits-conditional", "n": 3, "seed": 10, "labels": [1, "2", 3], "format": fmt}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "digits-conditional" and body["version"] == 1 and body["format"] == fmt
    assert (body["height"], body["width"], body["channels"]) == (32, 32, 1)
    assert [i["seed"] for i in body["images"]] == [10, 11, 12]
    assert [i["label"] for i in body["images"]] == [1, 2, 3]
    assert [i["label_name"] for i in body["images"]] == ["1", "2", "3"]
    for image in body["images"]:
        data = base64.b64decode(image["data"])
        if fmt == "npy":
            array = np.load(io.BytesIO(data), allow_pickle=False)
            assert array.shape == (32, 32, 1) and array.dtype == np.uint8
        else:
            with Image.open(io.BytesIO(data)) as decoded:
                assert decoded.format == fmt.upper() and decoded.size == (32, 32)


def test_same_seed_same_bytes_and_binary_answer(server: Server) -> None:
    first = post(server, {"model": "digits-conditional", "seeds": [7, 99], "labels": 4}).json()
    again = post(server, {"model": "digits-conditional", "seeds": [99], "labels": "4"}).json()
    assert first["images"][1]["data"] == again["images"][0]["data"]  # batch-independent, label by name
    other = post(server, {"model": "digits-conditional", "seeds": [99], "labels": 5}).json()
    assert other["images"][0]["data"] != again["images"][0]["data"]

    r = post(server, {"model": "digits-conditional", "seed": 99, "labels": 4}, accept="image/png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["x-seed"] == "99" and r.headers["x-label"] == "4" and r.headers["x-model-version"] == "1"
    assert r.content == base64.b64decode(again["images"][0]["data"])


def test_defaults_come_from_the_manifest(server: Server) -> None:
    body = post(server, {"model": "digits-conditional", "n": 4, "seed": 20}).json()
    assert [i["label"] for i in body["images"]] == [0, 1, 2, 3]  # seed mod 10 when no label is asked
    random_seeds = post(server, {"model": "digits"}).json()
    assert len(random_seeds["images"]) == 1 and random_seeds["images"][0]["label"] is None
    truncated = post(server, {"model": "digits", "seed": 3, "truncation": 0.5}).json()
    plain = post(server, {"model": "digits", "seed": 3}).json()
    assert truncated["images"][0]["data"] != plain["images"][0]["data"]


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (
            {"model": "nope"},
            {},
            404,
            "unknown model 'nope'; generate models served: digits, digits-conditional, digits-style",
        ),
        ({"model": "srresnet-x2"}, {}, 400, "is an upscale model"),
        # names that are not model names (paths, traversal, huge) are refused without an echo
        ({"model": "../../etc/passwd"}, {}, 400, "a model name is 1-64 characters"),
        ({"model": "digits/../digits"}, {}, 400, "a model name is 1-64 characters"),
        ({"model": "digits\n"}, {}, 400, "a model name is 1-64 characters"),
        ({"model": "x" * 5000}, {}, 400, "generate models served: digits, digits-conditional, digits-style"),
        ({"model": "digits-conditional", "labels": "cat"}, {}, 400, "unknown label 'cat'; classes are 0-9"),
        ({"model": "digits-conditional", "labels": 10}, {}, 400, "unknown label 10"),
        ({"model": "digits-conditional", "n": 2, "labels": [1, 2, 3]}, {}, 400, "3 labels for 2 images"),
        ({"model": "digits", "labels": 1}, {}, 400, "unconditional"),
        ({"model": "digits", "n": 65}, {}, 400, "n must be between 1 and 64"),
        # found by fuzzing: a huge n used to build its seed list before the limit was checked
        ({"model": "digits", "n": 331187445862061568, "seed": 7}, {}, 400, "got 331187445862061568"),
        ({"model": "digits", "n": 10**9}, {}, 400, "n must be between 1 and 64"),
        ({"model": "digits", "n": 0}, {}, 422, "n: Input should be greater than or equal to 1"),
        (
            {"model": "digits", "format": "gif"},
            {},
            422,
            "format: Input should be 'png', 'jpeg', 'webp' or 'npy'",
        ),
        ({"model": "digits", "seed": -1}, {}, 422, "seed"),
        ({"model": "digits", "seed": 1, "seeds": [2]}, {}, 422, "either seed or seeds"),
        ({"model": "digits", "n": 3, "seeds": [1, 2]}, {}, 422, "n is 3 but 2 seeds"),
        ({"model": "digits", "seed": 2**63 - 2, "n": 3}, {}, 422, "seed + n - 1 must be at most"),
        ({"model": "digits", "seeds": [1, 2**63]}, {}, 422, "seeds.1: Input should be less than or equal"),
        ({"model": "digits", "truncation": 0.0}, {}, 422, "truncation"),
        ({"model": "digits", "colour": "red"}, {}, 422, "Extra inputs are not permitted"),
        ({"model": "digits", "n": 2}, {"accept": "image/png"}, 406, "only for n=1"),
        ({"model": "digits"}, {"x-deadline-ms": "soon"}, 400, "X-Deadline-Ms must be an integer"),
        # '²' is a digit to str.isdigit() but not to int(): it used to answer 500
        (
            {"model": "digits"},
            {"x-deadline-ms": "²".encode("latin-1")},
            400,
            "X-Deadline-Ms must be an integer",
        ),
        ({"model": "digits"}, {"accept": "text/html"}, 406, "allows none of what this request"),
    ],
)
def test_bad_requests_are_named(
    server: Server, body: dict[str, object], headers: dict[str, str | bytes], status: int, message: str
) -> None:
    r = post(server, body, **headers)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert message in error["message"] and error["code"]
    assert "Traceback" not in r.text


def test_malformed_and_oversized_bodies(server: Server) -> None:
    r = httpx.post(
        f"{server.url}/generate", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = httpx.post(
        f"{server.url}/generate",
        content=b"x" * (21 * 1024 * 1024),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    r = httpx.get(f"{server.url}/nowhere")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/readyz").status_code == 200


def test_request_id_is_echoed_or_made(server: Server) -> None:
    r = post(server, {"model": "digits"}, **{"x-request-id": "job-42.7"})
    assert r.headers["x-request-id"] == "job-42.7"
    # the access log is written in batches, off the event loop: within a moment
    deadline = time.monotonic() + 5
    while '"request_id": "job-42.7"' not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert '"request_id": "job-42.7"' in server.log()
    line = next(line for line in server.log().splitlines() if '"request_id": "job-42.7"' in line)
    assert " INFO gan.access " in line
    entry = json.loads(line.split(" gan.access ", 1)[1])
    assert entry["method"] == "POST" and entry["path"] == "/generate" and entry["status"] == 200
    assert entry["model"] == "digits" and entry["client"] == "127.0.0.1" and entry["ms"] > 0
    made = post(server, {"model": "digits"}, **{"x-request-id": "bad id with spaces"}).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", made)
    # sent twice: the first, as the door (service.transport.door) reads it when it answers instead
    twice = httpx.post(
        f"{server.url}/generate",
        json={"model": "digits"},
        headers=[("X-Request-ID", "first-1"), ("X-Request-ID", "second-2")],
    )
    assert twice.headers.get_list("x-request-id") == ["first-1"]


def test_models_health_and_metrics(server: Server) -> None:
    models = httpx.get(f"{server.url}/v1/models").json()
    assert [m["name"] for m in models["models"]] == [
        "digits",
        "digits-conditional",
        "digits-style",
        "srgan-x4",
        "srresnet-x2",
        "srresnet-x4",
    ]
    assert all(m["provider"] == "CPUExecutionProvider" and m["file"]["sha256"] for m in models["models"])
    assert models["failed"] == {}
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready["status"] == "ready" and set(ready["models"]) == {m["name"] for m in models["models"]}
    post(server, {"model": "digits", "n": 2})
    assert server.metric("gan_images_generated_total", model="digits") >= 2
    assert server.metric("gan_model_info", model="digits", provider="CPUExecutionProvider") == 1
    assert server.metric("gan_requests_total", endpoint="/generate", model="digits", status="200") >= 1


def test_the_serving_path_never_imports_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, service.cli, service.api.app, service.lifecycle.registry, service.served; "
        "print(sorted(m for m in ('torch', 'training', 'onnx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_openapi_documents_every_endpoint(server: Server) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert {"/generate", "/upscale", "/v1/models", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    upscale = spec["paths"]["/upscale"]["post"]
    assert {"image/png", "image/jpeg", "image/webp", "multipart/form-data"} <= set(
        upscale["requestBody"]["content"]
    )
    assert {"413", "415", "429", "504"} <= set(upscale["responses"])
    generate = spec["paths"]["/generate"]["post"]
    assert "image/png" in generate["responses"]["200"]["content"]
    assert httpx.get(f"{server.url}/docs").status_code == 200


def test_the_app_alone_answers_as_the_service_does(server: Server, tmp_path: Path) -> None:
    """The running service hands /generate straight to its route's handler (service.api.route.
    Dispatch); the FastAPI app on its own routes it through the framework: one handler, so the
    same answers and errors."""
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    from service.config import Settings
    from tests.live_server import model_subset

    settings = Settings(models_dir=model_subset(tmp_path, ["digits-conditional"]), warmup=False)
    body: dict[str, object] = {"model": "digits-conditional", "seeds": [5, 6], "labels": [1, "2"]}
    with TestClient(create_app(settings)) as client:
        direct = client.post("/generate", json=body)
        bad = client.post("/generate", json={"model": "digits-conditional", "labels": "cat"})
        invalid = client.post("/generate", json={"n": 0})
        deadline = client.post("/generate", json={}, headers={"x-deadline-ms": "²".encode("latin-1")})
    service = post(server, body)
    assert direct.status_code == service.status_code == 200
    assert direct.json()["images"] == service.json()["images"]
    service_bad = post(server, {"model": "digits-conditional", "labels": "cat"})
    assert bad.status_code == service_bad.status_code == 400 and bad.json() == service_bad.json()
    service_invalid = post(server, {"n": 0})
    assert invalid.status_code == service_invalid.status_code == 422
    assert invalid.json() == service_invalid.json()
    assert deadline.status_code == 400


@pytest.mark.parametrize(
    ("accept", "body", "media"),
    [
        # q-values and order count (RFC 9110): JSON is acceptable here, so n=4 is not a 406
        ("application/json, image/png", {"n": 4}, "application/json"),
        ("image/png, application/json", {"n": 4}, "application/json"),
        ("application/json, image/png", {}, "application/json"),
        ("image/png, application/json", {}, "image/png"),
        ("image/png;q=0.5, application/json", {}, "application/json"),
        ("application/json;q=0.2, image/webp", {}, "image/webp"),
        ("image/*", {"format": "jpeg"}, "image/jpeg"),
        ("image/*;q=0.9, */*;q=0.1", {}, "image/png"),
        ("text/html, */*;q=0.8", {"n": 2}, "application/json"),
        ("application/x-npy", {}, "application/x-npy"),
    ],
)
def test_accept_is_negotiated(server: Server, accept: str, body: dict[str, object], media: str) -> None:
    r = post(server, {"model": "digits", "seed": 3, **body}, accept=accept)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == media
    if media != "application/json":
        assert r.headers["x-seed"] == "3"
