"""POST /walk against a real server: a latent walk's ends are the seeds' own images, its middle
is new, and bad walks get clear errors."""

from __future__ import annotations

import base64
import io
import itertools

import httpx
import numpy as np
import pytest
from PIL import Image

from model_repository.latents import interpolate_latent, latent_from_seed
from tests.live_server import Server


def walk(server: Server, body: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{server.url}/walk", json=body, timeout=30)


def generate_one(server: Server, body: dict[str, object]) -> bytes:
    r = httpx.post(f"{server.url}/generate", json=body, headers={"accept": "image/png"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.content


@pytest.mark.parametrize("method", ["slerp", "lerp"])
def test_the_ends_are_the_seeds_images_and_the_middle_is_between(server: Server, method: str) -> None:
    r = walk(
        server,
        {"model": "digits-conditional", "from_seed": 5, "to_seed": 42, "steps": 5, "label": 3}
        | {"method": method},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["from_seed"], body["to_seed"], body["method"]) == (5, 42, method)
    assert (body["label"], body["label_name"], body["format"]) == (3, "3", "png")
    assert [image["t"] for image in body["images"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    frames = [base64.b64decode(image["data"]) for image in body["images"]]
    assert frames[0] == generate_one(server, {"model": "digits-conditional", "seed": 5, "labels": 3})
    assert frames[-1] == generate_one(server, {"model": "digits-conditional", "seed": 42, "labels": 3})
    assert len(set(frames)) == 5  # every step is a different image
    pixels = [np.asarray(Image.open(io.BytesIO(f)), dtype=np.float64) for f in frames]
    # Small steps in latent space are small steps in the image: each frame is nearer its
    # neighbour than the two ends are to each other.
    ends = np.abs(pixels[0] - pixels[-1]).mean()
    assert all(np.abs(a - b).mean() < ends for a, b in itertools.pairwise(pixels))


def test_default_label_is_the_from_seeds_and_the_walk_is_reproducible(server: Server) -> None:
    body = {"model": "digits-conditional", "from_seed": 13, "to_seed": 14, "steps": 3}
    first, again = walk(server, body).json(), walk(server, body).json()
    assert first["label"] == 13 % 10 and first == again
    unconditional = walk(server, {"model": "digits", "from_seed": 1, "to_seed": 2, "steps": 2}).json()
    assert unconditional["label"] is None and unconditional["label_name"] is None
    assert base64.b64decode(unconditional["images"][1]["data"]) == generate_one(
        server, {"model": "digits", "seed": 2}
    )


def test_truncation_applies_to_both_ends(server: Server) -> None:
    wanted = {"model": "digits", "from_seed": 3, "to_seed": 4, "steps": 2, "truncation": 0.5, "format": "npy"}
    body = walk(server, wanted).json()
    last = np.load(io.BytesIO(base64.b64decode(body["images"][1]["data"])))
    plain = httpx.post(
        f"{server.url}/generate",
        json={"model": "digits", "seed": 4, "truncation": 0.5},
        headers={"accept": "application/x-npy"},
        timeout=30,
    )
    assert np.array_equal(last, np.load(io.BytesIO(plain.content)))


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"from_seed": 1, "to_seed": 2, "steps": 1}, 422, "steps"),
        ({"from_seed": 1, "to_seed": 2, "steps": 65}, 400, "between 2 and 64"),
        ({"from_seed": -1, "to_seed": 2}, 422, "from_seed"),
        ({"from_seed": 1, "to_seed": 2, "label": 10}, 400, "unknown label"),
        ({"from_seed": 1, "to_seed": 2, "label": [1, 2]}, 422, "label"),
        ({"from_seed": 1, "to_seed": 2, "method": "cubic"}, 422, "method"),
        ({"from_seed": 1}, 422, "to_seed"),
        ({"model": "srresnet-x2", "from_seed": 1, "to_seed": 2}, 400, "upscale model"),
        ({"model": "nope", "from_seed": 1, "to_seed": 2}, 404, "unknown model"),
    ],
)
def test_bad_walks_are_refused_clearly(
    server: Server, body: dict[str, object], status: int, words: str
) -> None:
    r = walk(server, {"model": "digits-conditional", **body})
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"]


def test_models_listing_says_the_limits(server: Server) -> None:
    limits = httpx.get(f"{server.url}/v1/models", timeout=10).json()["limits"]
    assert limits == {
        "max_n": 64,
        "max_walk_steps": 64,
        "max_input_pixels": 1024 * 1024,
        "max_body_bytes": 20 * 1024 * 1024,
    }


def test_interpolation_ends_are_exact_and_slerp_keeps_the_norm() -> None:
    a, b = latent_from_seed(1, 128), latent_from_seed(2, 128)
    for method in ("slerp", "lerp"):
        assert np.array_equal(interpolate_latent(a, b, 0.0, method), a)
        assert np.array_equal(interpolate_latent(a, b, 1.0, method), b)
    # Two independent 128-d Gaussians are nearly orthogonal: the straight line's midpoint has
    # about 1/sqrt(2) of their norm, the great circle's about all of it.
    norm = (np.linalg.norm(a) + np.linalg.norm(b)) / 2
    assert np.linalg.norm(interpolate_latent(a, b, 0.5, "slerp")) > 0.95 * norm
    assert np.linalg.norm(interpolate_latent(a, b, 0.5, "lerp")) < 0.8 * norm
    assert np.array_equal(interpolate_latent(a, a, 0.3, "slerp"), a)  # no great circle: no NaN
    with pytest.raises(ValueError, match="t must be"):
        interpolate_latent(a, b, 1.5)
    with pytest.raises(ValueError, match="method"):
        interpolate_latent(a, b, 0.5, "cubic")
