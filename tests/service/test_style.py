"""The bundled style model (digits-style) through a real server: truncation toward the label's mean
style, the two noise sources, style mixing, latents out and back in, walks in w, determinism
whatever the batch, and clear errors for what a model does not take.

Images that should be the same are compared as files (bytes) where they are made the same way, and
decoded (`same`) where the files carry different provenance records (contract.provenance): a walk
frame and a /generate image, a mixing cell and a source, an image from a w and one from its seed."""

from __future__ import annotations

import base64
import io
import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.live_server import Server

MODEL = "digits-style"
NUM_WS, W_DIM = 8, 128


def post(server: Server, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=60)


def images(server: Server, body: dict[str, Any]) -> list[dict[str, Any]]:
    r = post(server, "/generate", {"model": MODEL, **body})
    assert r.status_code == 200, r.text
    return list(r.json()["images"])


def png(item: dict[str, Any]) -> bytes:
    return base64.b64decode(item["data"])


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)), dtype=np.float64)


def same(item: dict[str, Any]) -> bytes:
    """An answer's image's decoded pixels: equal for the same image whatever its file's record."""
    with Image.open(io.BytesIO(png(item))) as image:
        return image.tobytes()


def npy(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return base64.b64encode(buffer.getvalue()).decode()


def test_psi_zero_gives_one_image_per_label_whatever_the_seed(server: Server) -> None:
    def mean_images(seeds: list[int], label: int, noise: dict[str, Any]) -> set[bytes]:
        # one request per seed: image i of a request gets noise_seed + i
        return {
            same(images(server, {"seed": seed, "labels": label, "truncation_psi": 0} | noise)[0])
            for seed in seeds
        }

    for noise in ({"noise": "const"}, {"noise_seed": 99}):  # the second source held fixed
        threes = mean_images([0, 5, 77, 1234], 3, noise)
        assert len(threes) == 1
        fours = mean_images([0, 5], 4, noise)
        assert len(fours) == 1 and fours != threes
    together = images(server, {"seeds": [0, 5, 77], "labels": 3, "truncation_psi": 0, "noise": "const"})
    assert {same(i) for i in together} == mean_images([0], 3, {"noise": "const"})
    # in between, psi moves the image from the label's mean toward the seed's own
    mean, half, own = (
        pixels(png(images(server, {"seed": 5, "labels": 3, "truncation_psi": psi})[0])) for psi in (0, 0.5, 1)
    )
    assert np.abs(half - mean).mean() < np.abs(own - mean).mean()


def test_psi_one_is_no_truncation(server: Server) -> None:
    plain = images(server, {"seed": 11, "n": 3})
    assert [png(i) for i in images(server, {"seed": 11, "n": 3, "truncation_psi": 1})] == [
        png(i) for i in plain
    ]
    assert [(i["seed"], i["label"], i["noise_seed"]) for i in plain] == [
        (11, 1, 11),
        (12, 2, 12),
        (13, 3, 13),
    ]


def test_the_noise_seed_changes_detail_less_than_the_seed_changes_the_image(server: Server) -> None:
    renoised, reseeded = [], []
    for seed in range(20, 30):
        base, other_noise = (
            png(images(server, {"seed": seed, "labels": 8, "noise_seed": k})[0]) for k in (1, 2)
        )
        other_seed = png(images(server, {"seed": seed + 100, "labels": 8, "noise_seed": 1})[0])
        assert base != other_noise  # the noise matters...
        renoised.append(np.abs(pixels(base) - pixels(other_noise)).mean())
        reseeded.append(np.abs(pixels(base) - pixels(other_seed)).mean())
    # ...but as fine detail: measured on the bundled model, another noise seed moves a pixel by
    # 0.8 levels on average, another seed by 29.6 (a ratio of 0.03)
    assert 0 < np.mean(renoised) < 0.2 * np.mean(reseeded)
    const = images(server, {"seed": 20, "labels": 8, "noise": "const"})[0]
    assert const["noise_seed"] is None and png(const) != png(images(server, {"seed": 20, "labels": 8})[0])


def test_mixing_at_the_first_layer_is_the_column_at_the_last_the_row(server: Server) -> None:
    def mix(crossover: object, **extra: Any) -> dict[str, Any]:
        body = {"row_seeds": [3, 4], "col_seeds": [7, 8, 9], "crossover": crossover} | extra
        r = post(server, "/mix", body)
        assert r.status_code == 200, r.text
        return dict(r.json())

    first = mix(0)
    assert first["model"] == MODEL and first["layers_from_row"] == []
    for row in first["cells"]:  # each cell is its column source's image (the column's noise too)
        assert [same(c) for c in row] == [same(c) for c in first["columns"]]
    assert png(first["columns"][0]) == png(images(server, {"seed": 7})[0])  # as /generate makes it
    for noise in ({"noise": "const"}, {"noise_seed": 5}):
        last, column = mix(NUM_WS, **noise), mix(0, **noise)
        assert last["layers_from_row"] == list(range(NUM_WS))
        for r, row in enumerate(last["cells"]):
            assert {same(c) for c in row} == {same(last["rows"][r])}
            assert [same(c) for c in column["cells"][r]] == [same(c) for c in column["columns"]]
    coarse = mix("coarse")
    assert coarse["layers_from_row"] == [0, 1, 2, 3] and coarse["crossover"] == "coarse"
    cells = {same(c) for row in coarse["cells"] for c in row}
    assert len(cells) == 6 and not cells & {same(c) for c in coarse["rows"] + coarse["columns"]}


def test_the_mixing_figure(server: Server) -> None:
    body = {"row_seeds": [1, 2], "col_seeds": [3, 4, 5], "crossover": "middle"}
    r = post(server, "/mix", body, accept="image/png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    figure = pixels(r.content)
    assert figure.shape == (3 * 34 - 2, 4 * 34 - 2)  # (rows+1) x (cols+1) cells of 32 px, 2 px gaps
    assert (figure[:32, :32] == 255).all()  # the blank corner
    as_json = post(server, "/mix", body | {"grid": True}).json()
    assert base64.b64decode(as_json["grid"]) == r.content
    assert np.array_equal(figure[34:66, :32], pixels(png(as_json["rows"][0])))
    assert np.array_equal(figure[34:66, 34:66], pixels(png(as_json["cells"][0][0])))
    assert post(server, "/mix", body).json()["grid"] is None


def test_latents_out_and_back_in(server: Server) -> None:
    out = images(server, {"seeds": [7, 8], "truncation_psi": 0.8, "return_latents": True})
    ws = [np.load(io.BytesIO(base64.b64decode(i["w"]))) for i in out]
    assert ws[0].shape == (NUM_WS, W_DIM) and ws[0].dtype == np.float32
    assert np.array_equal(ws[0][0], ws[0][-1])  # one style for every layer
    # the same ws and noise seeds give the same images
    again = images(server, {"ws": [i["w"] for i in out], "noise_seed": 7})
    assert same(again[0]) == same(out[0]) and again[0]["seed"] is None and again[0]["noise_seed"] == 7
    # one w (w_dim,) is broadcast to every layer; an edited w gives another image
    single = images(server, {"ws": [npy(ws[0][0])], "noise_seed": 7})
    assert png(single[0]) == png(again[0])  # the same w and noise: the same file
    edited = images(server, {"ws": [npy(ws[0] + 0.5 * (ws[1] - ws[0]))], "noise_seed": 7})
    assert same(edited[0]) not in (same(out[0]), same(out[1]))
    # /mix takes ws too: a w row source with a seeded column at crossover 0 is the column
    r = post(
        server, "/mix", {"row_ws": [out[0]["w"]], "col_seeds": [8], "crossover": NUM_WS, "noise_seed": 7}
    )
    assert r.status_code == 200, r.text
    assert same(r.json()["cells"][0][0]) == same(out[0])


def test_bad_ws_are_refused(server: Server) -> None:
    good = np.zeros((NUM_WS, W_DIM), np.float32)
    nan = good.copy()
    nan[2, 3] = np.nan
    cases = [
        (npy(np.zeros(W_DIM + 1, np.float32)), "expected shape (128,) or (8, 128), got (129,)"),
        (npy(np.zeros((NUM_WS + 1, W_DIM), np.float32)), "got (9, 128)"),
        (npy(nan), "NaN or infinite"),
        (npy(good + np.inf), "NaN or infinite"),
        (npy(good + 1e6), "within"),
        (npy(np.zeros((NUM_WS, W_DIM), np.int32)), "floating-point"),
        (npy(np.zeros((1000, 1000), np.float32)), "too big"),
        ("not base64!", "not a base64 .npy file"),
        (base64.b64encode(b"\x93NUMPY garbage").decode(), "not a base64 .npy file"),
    ]
    for w, message in cases:
        r = post(server, "/generate", {"model": MODEL, "ws": [npy(good), w], "noise": "const"})
        assert r.status_code == 400, (message, r.text)
        error = r.json()["error"]["message"]
        assert "ws[1]" in error and message in error, error
    r = post(server, "/mix", {"row_ws": [npy(nan)], "col_seeds": [1]})
    assert r.status_code == 400 and "row_ws[0]" in r.text
    # a w with seeds, labels or psi is refused by the schema; a w without a noise seed asks for one
    for extra in ({"seed": 1}, {"labels": 2}, {"truncation_psi": 0.5}):
        assert post(server, "/generate", {"model": MODEL, "ws": [npy(good)]} | extra).status_code == 422
    r = post(server, "/generate", {"model": MODEL, "ws": [npy(good)], "noise": "random"})
    assert r.status_code == 400 and "noise_seed" in r.text
    assert images(server, {"ws": [npy(good)]})[0]["noise_seed"] is None  # default: zero noise


def test_a_parameter_a_model_does_not_take_is_named(server: Server) -> None:
    for field, value in (
        ("truncation_psi", 0.5),
        ("noise_seed", 3),
        ("noise", "const"),
        ("return_latents", True),
    ):
        r = post(server, "/generate", {"model": "digits-conditional", "seed": 1, field: value})
        assert r.status_code == 400 and field in r.json()["error"]["message"], r.text
    r = post(server, "/walk", {"model": "digits", "from_seed": 1, "to_seed": 2, "truncation_psi": 0.5})
    assert r.status_code == 400 and "truncation_psi" in r.text
    r = post(server, "/generate", {"model": MODEL, "seed": 1, "truncation": 1.5})
    assert r.status_code == 400 and "truncation_psi" in r.json()["error"]["message"]
    r = post(server, "/mix", {"model": "digits-conditional", "row_seeds": [1], "col_seeds": [2]})
    assert r.status_code == 400 and "style models served: digits-style" in r.text
    for body, status, message in (
        ({"row_seeds": [1], "col_seeds": [2], "crossover": 9}, 400, "from 0 to 8"),
        ({"row_seeds": [1], "col_seeds": [2], "crossover": "finest"}, 422, "crossover"),
        ({"row_seeds": list(range(8)), "col_seeds": list(range(8))}, 400, "makes 80 images"),
        ({"row_seeds": [1], "col_ws": [npy(np.zeros(W_DIM, np.float32))], "label": 3}, 400, "label"),
        ({"row_seeds": [1]}, 422, "col_seeds or col_ws"),
        ({"row_seeds": [1], "col_seeds": [2], "noise": "const", "noise_seed": 1}, 422, "no noise_seed"),
    ):
        r = post(server, "/mix", body)
        assert r.status_code == status and message in r.text, (body, r.text)
    r = post(server, "/generate", {"model": MODEL, "seed": 1, "return_latents": True}, accept="image/png")
    assert r.status_code == 400 and "JSON" in r.text


def test_walk_in_w_with_the_noise_held(server: Server) -> None:
    r = post(server, "/walk", {"model": MODEL, "from_seed": 5, "to_seed": 42, "steps": 5, "label": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == "lerp" and body["label"] == 3
    frames = [png(i) for i in body["images"]]
    assert same(body["images"][0]) == same(images(server, {"seed": 5, "labels": 3})[0])
    # the last frame: to_seed's style with from_seed's noise (held along the walk)
    assert same(body["images"][-1]) == same(images(server, {"seed": 42, "labels": 3, "noise_seed": 5})[0])
    assert len({same(i) for i in body["images"]}) == 5
    steps = [pixels(f) for f in frames]
    ends = np.abs(steps[0] - steps[-1]).mean()
    assert all(np.abs(a - b).mean() < ends for a, b in itertools.pairwise(steps))
    slerp = post(
        server, "/walk", {"model": MODEL, "from_seed": 5, "to_seed": 42, "steps": 3, "method": "slerp"}
    )
    assert slerp.status_code == 200 and slerp.json()["method"] == "slerp"


def test_the_same_bytes_whatever_the_batch(server: Server) -> None:
    body = {"seeds": [31, 32, 33, 34], "labels": [1, 2, 3, 4], "truncation_psi": 0.7, "noise_seed": 500}
    alone = [
        png(images(server, body | {"seeds": [s], "labels": [label], "noise_seed": 500 + i})[0])
        for i, (s, label) in enumerate(zip(body["seeds"], body["labels"], strict=True))
    ]
    with ThreadPoolExecutor(8) as pool:  # concurrent requests share batches with /mix and /walk work
        together = list(pool.map(lambda _: [png(i) for i in images(server, body)], range(6)))
        list(
            pool.map(
                lambda s: post(server, "/mix", {"row_seeds": [s], "col_seeds": [s + 1, s + 2]}), range(6)
            )
        )
    assert all(t == alone for t in together)
    # a request spanning batches (n = 40 > max_batch_size 32): its rows (pixels and ws) come
    # back whole and in order
    spanning = images(server, {"seed": 200, "n": 40, "return_latents": True})
    last = images(server, {"seed": 239, "return_latents": True})[0]
    assert (spanning[-1]["seed"], png(spanning[-1]), spanning[-1]["w"]) == (239, png(last), last["w"])
    # a /mix source is the /generate image of its seed
    mixed = post(
        server, "/mix", {"row_seeds": [31], "col_seeds": [40], "label": 1, "truncation_psi": 0.7}
    ).json()
    assert png(mixed["rows"][0]) == png(images(server, {"seed": 31, "labels": 1, "truncation_psi": 0.7})[0])


def test_models_and_openapi_describe_the_style_model(server: Server) -> None:
    models = {m["name"]: m for m in httpx.get(f"{server.url}/v1/models").json()["models"]}
    style = models[MODEL]
    assert style["kind"] == "style" and style["accepts"]["endpoints"] == ["/generate", "/walk", "/mix"]
    assert "truncation_psi" in style["accepts"]["generate"] and style["accepts"]["num_ws"] == NUM_WS
    assert "truncation_psi" not in models["digits"]["accepts"]["generate"]
    assert style["generator"]["style"]["layers"] == {"coarse": [0, 4], "middle": [4, 6], "fine": [6, 8]}
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert "/mix" in schema["paths"]
    generate = schema["components"]["schemas"]["GenerateRequest"]["properties"]
    assert {"truncation_psi", "noise_seed", "noise", "ws", "return_latents"} <= set(generate)
    assert "crossover" in schema["components"]["schemas"]["MixRequest"]["properties"]


@pytest.mark.parametrize("fmt", ["jpeg", "npy"])
def test_formats_and_binary_answers(server: Server, fmt: str) -> None:
    r = post(server, "/generate", {"model": MODEL, "seed": 3, "noise_seed": 4, "format": fmt})
    assert r.json()["format"] == fmt
    one = post(server, "/generate", {"model": MODEL, "seed": 3, "noise_seed": 4}, accept="image/png")
    assert (
        one.headers["x-seed"] == "3" and one.headers["x-noise-seed"] == "4" and one.headers["x-label"] == "3"
    )
