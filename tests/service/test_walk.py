"""POST /walk against a real server: a latent walk's ends are the seeds' own images, its middle
is new, and bad walks get clear errors.

A frame and the /generate image of its seed have the same pixels but not the same bytes: each file
carries its own provenance record (contract.provenance), so they are compared decoded."""

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
    """The /generate image's decoded pixels."""
    r = httpx.post(f"{server.url}/generate", json=body, headers={"accept": "image/png"}, timeout=30)
    assert r.status_code == 200, r.text
    return pixels_of(r.content)


def pixels_of(data: bytes) -> bytes:
    """An image file's decoded pixels."""
    with Image.open(io.BytesIO(data)) as image:
        return image.tobytes()


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
    assert pixels_of(frames[0]) == generate_one(
        server, {"model": "digits-conditional", "seed": 5, "labels": 3}
    )
    assert pixels_of(frames[-1]) == generate_one(
        server, {"model": "digits-conditional", "seed": 42, "labels": 3}
    )
    assert len({pixels_of(f) for f in frames}) == 5  # every step is a different image
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
    assert pixels_of(base64.b64decode(unconditional["images"][1]["data"])) == generate_one(
        server, {"model": "digits", "seed": 2}
    )


def frames_of(body: dict[str, object]) -> list[bytes]:
    return [base64.b64decode(image["data"]) for image in body["images"]]


def test_a_loop_goes_through_every_seed_and_back_to_the_first(server: Server) -> None:
    model, seeds, steps = "digits-conditional", [5, 42, 7], 4
    r = walk(server, {"model": model, "seeds": seeds, "steps": steps, "label": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["seeds"], body["from_seed"], body["to_seed"], body["method"]) == (seeds, 5, 5, "slerp")
    assert [image["segment"] for image in body["images"]] == [0] * 4 + [1] * 4 + [2] * 4
    assert [image["t"] for image in body["images"]] == [0.0, 0.25, 0.5, 0.75] * 3
    frames = frames_of(body)
    # each seed's frame is its own /generate image, at the start of its segment
    for k, seed in enumerate(seeds):
        assert pixels_of(frames[k * steps]) == generate_one(
            server, {"model": model, "seed": seed, "labels": 3}
        )
    # each segment is the from/to walk to the next seed without its last frame, the next one's
    # first: the loop plays seamlessly on repeat (the frame after the last would be the first)
    loop = [pixels_of(f) for f in frames]
    for k, seed in enumerate(seeds):
        after = seeds[(k + 1) % len(seeds)]
        pair = frames_of(
            walk(
                server, {"model": model, "from_seed": seed, "to_seed": after, "steps": steps + 1, "label": 3}
            ).json()
        )
        assert [pixels_of(f) for f in pair[:steps]] == loop[k * steps : (k + 1) * steps]
        assert pixels_of(pair[steps]) == loop[((k + 1) % len(seeds)) * steps]
    pixels = [np.asarray(Image.open(io.BytesIO(f)), dtype=np.float64) for f in frames]
    # the loop closes: the last frame is nearer the first than the first is to the middle seed's
    assert np.abs(pixels[-1] - pixels[0]).mean() < np.abs(pixels[steps] - pixels[0]).mean()
    assert len(set(loop)) == 12


def test_a_from_to_walk_says_its_two_seeds_and_one_segment(server: Server) -> None:
    body = walk(server, {"model": "digits", "from_seed": 8, "to_seed": 3, "steps": 3}).json()
    assert (body["seeds"], body["from_seed"], body["to_seed"]) == ([8, 3], 8, 3)
    assert [(image["segment"], image["t"]) for image in body["images"]] == [(0, 0.0), (0, 0.5), (0, 1.0)]


def animated(
    server: Server, body: dict[str, object]
) -> tuple[httpx.Response, Image.Image, np.ndarray, list[float]]:
    """The animated answer, the file as Pillow opens it, its frames (N, H, W, 3) as int64 and
    each frame's duration."""
    r = httpx.post(f"{server.url}/walk", json=body, headers={"accept": "image/*"}, timeout=30)
    assert r.status_code == 200, r.text
    image = Image.open(io.BytesIO(r.content))
    frames, durations = [], []
    for i in range(image.n_frames):
        image.seek(i)
        frames.append(np.asarray(image.convert("RGB"), dtype=np.int64))
        durations.append(image.info["duration"])  # read once the frame is loaded (WebP loads lazily)
    return r, image, np.stack(frames), durations


@pytest.mark.parametrize(("animation", "kind"), [("webp", "WEBP"), ("gif", "GIF"), ("apng", "PNG")])
def test_an_animation_holds_the_frames_of_the_json_answer(server: Server, animation: str, kind: str) -> None:
    body = {"model": "digits-conditional", "seeds": [1, 2, 3], "steps": 3, "label": 6}
    gray = np.stack([np.asarray(Image.open(io.BytesIO(f))) for f in frames_of(walk(server, body).json())])
    r, image, frames, durations = animated(server, body | {"animation": animation, "frame_ms": 70})
    assert r.headers["content-type"] == f"image/{animation}"
    assert {k: r.headers[k] for k in ("x-model", "x-model-version", "x-frames", "x-frame-ms", "x-seeds")} == {
        "x-model": "digits-conditional",
        "x-model-version": "1",
        "x-frames": "9",
        "x-frame-ms": "70",
        "x-seeds": "1,2,3",
    }
    assert r.headers["x-label"] == "6"
    assert image.format == kind and image.n_frames == 9 and image.info["loop"] == 0
    assert durations == [70] * 9
    # gray stays gray; every format holds 256 grays exactly (GIF's palette too)
    assert np.array_equal(frames, np.repeat(gray[..., None], 3, axis=-1))


def test_a_from_to_walk_animates_too_and_gif_keeps_hundredths(server: Server) -> None:
    r, image, _, durations = animated(
        server,
        {"model": "digits", "from_seed": 4, "to_seed": 9, "steps": 4, "animation": "gif", "frame_ms": 25},
    )
    assert (r.headers["x-seeds"], r.headers["x-frames"], r.headers["x-frame-ms"]) == ("4,9", "4", "30")
    assert "x-label" not in r.headers and image.n_frames == 4 and durations == [30] * 4


def test_a_style_model_loops_in_w(server: Server) -> None:
    model, seeds, steps = "digits-style", [5, 42, 7], 3
    body = walk(server, {"model": model, "seeds": seeds, "steps": steps, "label": 3}).json()
    assert body["method"] == "lerp" and body["seeds"] == seeds
    frames = frames_of(body)
    assert len(frames) == 9 and len({pixels_of(f) for f in frames}) == 9
    assert pixels_of(frames[0]) == generate_one(server, {"model": model, "seed": 5, "labels": 3})
    # the other seeds' frames: their styles, with the first seed's noise held along the loop
    assert pixels_of(frames[3]) == generate_one(
        server, {"model": model, "seed": 42, "labels": 3, "noise_seed": 5}
    )
    assert pixels_of(frames[6]) == generate_one(
        server, {"model": model, "seed": 7, "labels": 3, "noise_seed": 5}
    )
    r, image, pixels, _ = animated(
        server, {"model": model, "seeds": seeds, "steps": steps, "label": 3, "animation": "webp"}
    )
    assert image.n_frames == 9 and r.headers["x-frame-ms"] == "100"
    first = np.asarray(Image.open(io.BytesIO(frames[0])), dtype=np.int64)
    assert np.array_equal(pixels[0][..., 0], first)


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
        ({"seeds": [1, 2], "from_seed": 1}, 422, "either seeds (a loop) or from_seed and to_seed"),
        ({"seeds": [1]}, 422, "seeds"),
        ({"seeds": [1, 2, 3], "steps": 22}, 400, "3 seeds with 22 steps each makes 66 frames"),
        ({"seeds": [1, 2], "animation": "gif", "frame_ms": 10}, 422, "frame_ms"),
        ({"seeds": [1, 2], "animation": "gif", "frame_ms": 10001}, 422, "frame_ms"),
        ({"seeds": [1, 2], "animation": "gif", "format": "webp"}, 422, "drop format"),
        ({"seeds": [1, 2], "frame_ms": 50}, 422, "give animation too"),
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


def test_an_accept_header_that_excludes_the_animation_is_a_406(server: Server) -> None:
    body = {"model": "digits", "seeds": [1, 2], "steps": 2, "animation": "gif"}
    for accept in ("image/png", "application/json", "image/gif;q=0, */*"):
        r = httpx.post(f"{server.url}/walk", json=body, headers={"accept": accept}, timeout=30)
        assert r.status_code == 406 and "image/gif" in r.json()["error"]["message"], (accept, r.text)
    for accept in ("image/*", "*/*", "image/gif", "application/json, image/gif;q=0.5"):
        r = httpx.post(f"{server.url}/walk", json=body, headers={"accept": accept}, timeout=30)
        assert r.status_code == 200 and r.headers["content-type"] == "image/gif", (accept, r.text)


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
