"""Provenance against a real server: every generated image file (/generate, /walk frames and
animations, /mix sources, cells and grid) carries the record of what made it, where each format
keeps metadata, and the request the record gives makes the same bytes again."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from client.inspect import inspect_file
from contract.provenance import KEY, SCHEMA, SOFTWARE, W_SOURCE, RecordHead
from contract.provenance_reader import read_provenance
from contract.regeneration import NotReproducible, regeneration
from service.images.encoding import encode_image
from service.images.stamping import encode_recorded, record_metadata
from tests.live_server import REPO, Server

STYLE = "digits-style"


def post(server: Server, path: str, body: dict[str, Any], accept: str = "application/json") -> httpx.Response:
    r = httpx.post(f"{server.url}{path}", json=body, headers={"accept": accept}, timeout=60)
    assert r.status_code == 200, r.text
    return r


def data(item: dict[str, Any]) -> bytes:
    return base64.b64decode(item["data"])


def remade(server: Server, image: bytes) -> bytes:
    """The image again, from the request its own record gives."""
    record = read_provenance(image)
    assert record is not None
    regen = regeneration(record)
    r = post(server, regen.endpoint, regen.body, regen.accept)
    if not regen.pick:
        return r.content
    value: Any = r.json()
    for key in regen.pick:
        value = value[key]
    return base64.b64decode(value)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_generated_images_carry_their_record_and_are_remade_byte_for_byte(server: Server, fmt: str) -> None:
    body = {"model": "digits-conditional", "n": 3, "seed": 10, "labels": [1, "2", 3], "format": fmt}
    images = post(server, "/generate", body).json()["images"]
    second = data(images[1])
    assert read_provenance(second) == {
        "schema": SCHEMA,
        "endpoint": "/generate",
        "model": {"name": "digits-conditional", "version": 1},
        "format": fmt,
        "source": "seed",
        "truncation": None,
        "seed": 11,
        "label": 2,
        "label_name": "2",
    }
    assert remade(server, second) == second
    # where other programs find it: PNG text chunks, EXIF ImageDescription and Software
    with Image.open(io.BytesIO(second)) as opened:
        if fmt == "png":
            assert opened.info["Software"] == SOFTWARE and opened.info[KEY].startswith('{"schema"')
        else:
            exif = opened.getexif()
            assert exif[0x0131] == SOFTWARE and exif[0x010E].startswith('{"schema"')
    # the binary answer is the same file
    one = post(
        server,
        "/generate",
        {"model": "digits-conditional", "seed": 11, "labels": 2, "format": fmt},
        "image/*",
    )
    assert one.content == second


@pytest.mark.parametrize(
    ("shape", "fmt"), [((32, 32, 1), "png"), ((200, 200, 3), "png"), ((8, 8, 4), "webp")]
)
def test_every_encoding_path_writes_the_record(shape: tuple[int, ...], fmt: str) -> None:
    """Small PNGs are written without Pillow, with their chunks made ready: the same file as
    encode_image with the record's metadata; larger ones (and JPEG, WebP) go through Pillow."""
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    record = RecordHead.of("/generate", "m", 1, format=fmt, source="seed").record(seed=1, label=None)
    data = encode_recorded(image, fmt, record)
    assert data == encode_image(image, fmt, record_metadata(fmt, record))
    assert read_provenance(data) == json.loads(record)
    assert encode_recorded(image, "npy", None) == encode_image(image, "npy")


def test_truncation_and_unconditional_models_and_npy(server: Server) -> None:
    image = post(server, "/generate", {"model": "digits", "seed": 3, "truncation": 0.5}, "image/png").content
    record = read_provenance(image)
    assert record is not None and (record["truncation"], record["label"]) == (0.5, None)
    assert regeneration(record).body == {"model": "digits@1", "seed": 3, "truncation": 0.5, "format": "png"}
    assert remade(server, image) == image
    npy = post(server, "/generate", {"model": "digits", "seed": 3, "truncation": 0.5, "format": "npy"})
    array = data(npy.json()["images"][0])
    assert read_provenance(array) is None  # .npy has no room for metadata: the bare array
    assert np.array_equal(np.load(io.BytesIO(array))[..., 0], np.asarray(Image.open(io.BytesIO(image))))


@pytest.mark.parametrize(
    "extra",
    [{"truncation_psi": 0.6, "noise_seed": 40}, {"truncation_psi": 0.3, "noise": "const"}, {}],
)
def test_style_records_hold_psi_and_noise_and_remake_the_image(server: Server, extra: dict[str, Any]) -> None:
    body = {"model": STYLE, "seed": 20, "n": 3, "labels": 4, "format": "webp"} | extra
    images = post(server, "/generate", body).json()["images"]
    last = data(images[2])
    record = read_provenance(last)
    assert record is not None
    psi = extra.get("truncation_psi", 1.0)
    noise_seed = None if "noise" in extra else extra.get("noise_seed", 20) + 2
    assert (record["seed"], record["label"], record["truncation_psi"]) == (22, 4, psi)
    assert (record["noise"], record["noise_seed"]) == (
        "const" if noise_seed is None else "random",
        noise_seed,
    )
    assert remade(server, last) == last


def test_an_image_from_a_clients_w_says_it_cannot_be_remade_from_seeds(server: Server) -> None:
    made = post(server, "/generate", {"model": STYLE, "seed": 7, "return_latents": True}).json()["images"][0]
    again = post(server, "/generate", {"model": STYLE, "ws": [made["w"]], "noise_seed": 7}).json()["images"][
        0
    ]
    record = read_provenance(data(again))
    assert record is not None and record["source"] == W_SOURCE and "seed" not in record
    assert record["noise_seed"] == 7
    with pytest.raises(NotReproducible, match="w given by the client"):
        regeneration(record)
    # the same pixels as the seed's image: only the records differ
    assert np.array_equal(
        np.asarray(Image.open(io.BytesIO(data(again)))), np.asarray(Image.open(io.BytesIO(data(made))))
    )


def test_walk_frames_name_their_walk_and_their_place_in_it(server: Server) -> None:
    body = {
        "model": "digits-conditional",
        "from_seed": 5,
        "to_seed": 42,
        "steps": 5,
        "label": 3,
        "format": "jpeg",
    }
    frames = [data(i) for i in post(server, "/walk", body).json()["images"]]
    record = read_provenance(frames[2])
    assert record is not None and record["endpoint"] == "/walk"
    assert {k: record[k] for k in ("from_seed", "to_seed", "steps", "method", "label", "truncation")} == {
        "from_seed": 5,
        "to_seed": 42,
        "steps": 5,
        "method": "slerp",
        "label": 3,
        "truncation": None,
    }
    assert record["frame"] == {"index": 2, "segment": 0, "t": 0.5}
    assert remade(server, frames[2]) == frames[2]
    loop = {"model": STYLE, "seeds": [5, 42, 7], "steps": 3, "truncation_psi": 0.8, "noise_seed": 9}
    frames = [data(i) for i in post(server, "/walk", loop).json()["images"]]
    record = read_provenance(frames[4])
    assert record is not None and record["seeds"] == [5, 42, 7] and "from_seed" not in record
    assert (record["method"], record["truncation_psi"], record["noise_seed"]) == ("lerp", 0.8, 9)
    assert record["frame"]["index"] == 4 and record["frame"]["segment"] == 1
    assert remade(server, frames[4]) == frames[4]


@pytest.mark.parametrize("animation", ["webp", "gif", "apng"])
def test_an_animation_carries_its_walk(server: Server, animation: str) -> None:
    body = {
        "model": "digits-conditional",
        "seeds": [1, 2, 3],
        "steps": 2,
        "animation": animation,
        "frame_ms": 25,
    }
    file = post(server, "/walk", body, "*/*").content
    record = read_provenance(file)
    assert record is not None and (record["animation"], record["seeds"]) == (animation, [1, 2, 3])
    assert record["frame_ms"] == (30 if animation == "gif" else 25)  # what the file holds
    assert "frame" not in record and "format" not in record
    assert remade(server, file) == file


def test_mix_images_carry_theirs(server: Server) -> None:
    body = {"model": STYLE, "row_seeds": [1, 2], "col_seeds": [3, 4, 5], "crossover": "middle", "grid": True}
    mixed = post(server, "/mix", body | {"truncation_psi": 0.7, "label": 6}).json()
    # a source is its /generate image: the same record, the same bytes
    column = data(mixed["columns"][1])
    record = read_provenance(column)
    assert (
        record is not None
        and record["endpoint"] == "/generate"
        and (record["seed"], record["label"]) == (4, 6)
    )
    assert column == data(
        post(server, "/generate", {"model": STYLE, "seed": 4, "labels": 6, "truncation_psi": 0.7}).json()[
            "images"
        ][0]
    )
    cell = data(mixed["cells"][1][2])
    record = read_provenance(cell)
    assert record is not None and record["image"] == "cell"
    assert (record["row_seed"], record["col_seed"], record["crossover"], record["label"]) == (
        2,
        5,
        "middle",
        6,
    )
    assert (record["truncation_psi"], record["noise_seed"]) == (0.7, 5)  # the column's noise
    assert remade(server, cell) == cell
    grid = base64.b64decode(mixed["grid"])
    record = read_provenance(grid)
    assert record is not None and (record["image"], record["row_seeds"], record["col_seeds"]) == (
        "grid",
        [1, 2],
        [3, 4, 5],
    )
    assert remade(server, grid) == grid
    # noise const and a given w
    const = post(
        server, "/mix", {"model": STYLE, "row_seeds": [1], "col_seeds": [3], "noise": "const"}
    ).json()
    cell = data(const["cells"][0][0])
    record = read_provenance(cell)
    assert record is not None and record["noise"] == "const" and remade(server, cell) == cell
    w = post(server, "/generate", {"model": STYLE, "seed": 8, "return_latents": True}).json()["images"][0][
        "w"
    ]
    given = post(server, "/mix", {"model": STYLE, "row_ws": [w], "col_seeds": [3]}).json()
    for image in (given["rows"][0], given["cells"][0][0]):
        record = read_provenance(data(image))
        assert record is not None and record["source"] == W_SOURCE
        with pytest.raises(NotReproducible):
            regeneration(record)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_the_commands_inspect_prints_make_the_file_again(server: Server, tmp_path: Path) -> None:
    frames = post(
        server, "/walk", {"model": "digits-conditional", "seeds": [4, 9], "steps": 3, "label": 2}
    ).json()
    frame = tmp_path / "frame.png"
    frame.write_bytes(data(frames["images"][4]))
    grid = tmp_path / "grid.webp"
    grid.write_bytes(
        post(
            server,
            "/mix",
            {"model": STYLE, "row_seeds": [1], "col_seeds": [2, 3], "format": "webp"},
            "image/webp",
        ).content
    )
    single = tmp_path / "one.jpg"
    single.write_bytes(
        post(
            server,
            "/generate",
            {"model": STYLE, "seed": 6, "truncation_psi": 0.5, "format": "jpeg"},
            "image/jpeg",
        ).content
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("GAN_API_KEY", None)
    for path in (frame, grid, single):
        status, report = inspect_file(path, server.url)
        assert status == 0 and report["reproducible"], report
        run = subprocess.run(
            report["curl"], shell=True, cwd=tmp_path, env=env, capture_output=True, timeout=60
        )
        assert run.returncode == 0, run.stderr
        assert (tmp_path / f"{path.stem}.regenerated{path.suffix}").read_bytes() == path.read_bytes()
        command, _, written = report["gan_client"].partition("  # writes ")
        command = command.replace("gan-client", f"{sys.executable} -m client.cli", 1)
        run = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert (tmp_path / written).read_bytes() == path.read_bytes(), written
