"""gan-client jobs end to end against real servers: generate and upscale, resume after a kill,
back-off under 429, a corrupt input among good ones, reproducible output."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from tests.live_server import REPO, Server


def gan_client(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client.cli", *args, "--url", url, "--no-progress"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def manifest(folder: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def test_generate_job_writes_labelled_files_and_a_manifest(small_server: Server, tmp_path: Path) -> None:
    out = tmp_path / "samples"
    run = gan_client(
        "generate", "--model", "digits-conditional", "--n", "30", "--labels", "0-2,9", "--seed", "100",
        "--out", str(out), "--per-request", "8", url=small_server.url,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "done 30, skipped 0, failed 0" in run.stdout
    lines = manifest(out)
    assert [e["seed"] for e in lines] == list(range(100, 130))  # seed order
    assert [e["label"] for e in lines] == [[0, 1, 2, 9][i % 4] for i in range(30)]
    first = lines[0]
    assert first == {
        "file": "0/seed100_label0.png", "format": "png", "label": 0, "label_name": "0",
        "model": "digits-conditional", "seed": 100, "version": 1,
    }  # fmt: skip
    for entry in lines:
        image = Image.open(out / str(entry["file"]))
        assert image.size == (32, 32)
    assert sorted(p.name for p in out.iterdir()) == ["0", "1", "2", "9", "job.json", "manifest.jsonl"]
    # Another job into the same folder is refused; the files are untouched.
    before = files_under(out)
    other = gan_client("generate", "--n", "30", "--labels", "3", "--out", str(out), url=small_server.url)
    assert other.returncode == 2 and "holds another job" in other.stderr
    assert files_under(out) == before


def test_same_seed_gives_byte_identical_output(small_server: Server, tmp_path: Path) -> None:
    outputs = []
    for k, concurrency in enumerate(("1", "6")):  # different batching, same bytes
        out = tmp_path / f"run{k}"
        run = gan_client(
            "generate", "--model", "digits-conditional", "--n", "40", "--seed", "7", "--out", str(out),
            "--concurrency", concurrency, "--per-request", "3", url=small_server.url,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        outputs.append(files_under(out))
    assert outputs[0] == outputs[1] and len(outputs[0]) == 42  # 40 images, job.json, manifest


def test_a_killed_job_resumes_without_redoing_finished_items(small_server: Server, tmp_path: Path) -> None:
    out = tmp_path / "resume"
    args = ["generate", "--model", "digits-conditional", "--n", "1200", "--seed", "5", "--out", str(out)]
    args += ["--per-request", "2", "--concurrency", "1", "--url", small_server.url, "--no-progress"]
    job = subprocess.Popen(
        [sys.executable, "-m", "client.cli", *args], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and job.poll() is None:
        path = out / "manifest.jsonl"
        if path.exists() and len(path.read_text().splitlines()) >= 200:
            break
        time.sleep(0.05)
    assert job.poll() is None, "the job ended before it could be killed"
    job.send_signal(signal.SIGKILL)
    job.wait()
    recorded = len(manifest(out))
    assert 200 <= recorded < 1200

    generated = small_server.metric("gan_images_generated_total", model="digits-conditional")
    run = subprocess.run(
        [sys.executable, "-m", "client.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    done = int(run.stdout.split("done ")[1].split(",")[0])
    skipped = int(run.stdout.split("skipped ")[1].split(",")[0])
    # Everything recorded before the kill was skipped; at most the one request in flight is redone.
    assert skipped >= recorded - 2 and done + skipped == 1200
    asked = small_server.metric("gan_images_generated_total", model="digits-conditional") - generated
    assert asked == done  # the server made only the missing images
    lines = manifest(out)
    assert [e["seed"] for e in lines] == list(range(5, 1205))
    assert all((out / str(e["file"])).is_file() for e in lines)
    assert not list(out.rglob("*.part"))  # no partial files left behind
    # A third run has nothing to do.
    again = subprocess.run(
        [sys.executable, "-m", "client.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0 and "done 0, skipped 1200, failed 0" in again.stdout


def test_a_busy_server_makes_the_client_back_off_and_finish(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    # A request's 4 images run as 4 batches of 1 while the queue holds 4: a request that arrives
    # while another is queued is refused, whatever the lanes' priority against the event loop.
    srv = make_server(["digits-conditional"], max_queue_units=4, max_batch_size=1)
    out = tmp_path / "busy"
    # Without throttling, so that the queue surely overflows: a throttled job may keep under it
    # (that is client/throttle.py's, tested in test_throttle.py); this is the retry path.
    run = gan_client(
        "generate", "--n", "96", "--seed", "1", "--out", str(out), "--per-request", "4", "--concurrency", "8",
        "--no-throttle", url=srv.url,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "done 96, skipped 0, failed 0" in run.stdout
    assert srv.metric("gan_rejections_total", reason="queue_full") > 0  # it was told to wait, and did
    assert "retried" in run.stderr and "queue_full" in run.stderr
    assert len(manifest(out)) == 96


def write_image(path: Path, size: tuple[int, int], mode: str = "RGB", fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(len(str(path))).integers(
        0, 256, (size[1], size[0], len(mode)), dtype=np.uint8
    )
    Image.fromarray(pixels[:, :, 0] if mode == "L" else pixels, mode).save(path, format=fmt)


def test_upscale_job_keeps_the_structure_and_reports_bad_inputs(small_server: Server, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    write_image(photos / "a.png", (20, 12))
    write_image(photos / "trip" / "b.jpg", (16, 16), fmt="JPEG")
    write_image(photos / "trip" / "deep" / "c.webp", (9, 7), mode="RGBA", fmt="WEBP")
    write_image(photos / "trip" / "gray.png", (10, 10), mode="L")
    (photos / "notes.txt").write_text("not an image")
    (photos / "trip" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    inputs_before = files_under(photos)
    out = tmp_path / "photos-x2"

    run = gan_client(
        "upscale", str(photos), str(out), "--model", "srresnet-x2", "--recursive", url=small_server.url
    )
    assert run.returncode == 1  # one item failed
    assert "done 4, skipped 0, failed 1, not images 1" in run.stdout
    assert "broken.png" in run.stderr and "invalid_request" in run.stderr
    assert "not a PNG, JPEG or WebP image" in run.stderr and "notes.txt" in run.stderr
    made = files_under(out)
    assert json.loads(made.pop(".upscale-job.json")) == {
        "model": "srresnet-x2", "version": 1, "options": DEFAULT_OPTIONS,
    }  # fmt: skip
    sizes = {name: Image.open(io.BytesIO(data)).size for name, data in made.items()}
    assert sizes == {
        "a.png": (40, 24),
        "trip/b.jpg": (32, 32),
        "trip/deep/c.webp": (18, 14),
        "trip/gray.png": (20, 20),
    }
    assert Image.open(out / "trip" / "deep" / "c.webp").mode == "RGBA"
    assert files_under(photos) == inputs_before  # the input is never written

    # A re-run skips what is there; only the broken file is tried (and fails) again.
    again = gan_client(
        "upscale", str(photos), str(out), "--model", "srresnet-x2", "--recursive", url=small_server.url
    )
    assert "done 0, skipped 4, failed 1" in again.stdout

    # Not recursive, another format, into a folder inside the input: only the top level, as WebP.
    inside = photos / "x2"
    flat = gan_client("upscale", str(photos), str(inside), "--format", "webp", url=small_server.url)
    assert flat.returncode == 0, flat.stderr
    assert sorted(files_under(inside)) == [".upscale-job.json", "a.webp"]
    # Output folder = input folder is refused before anything is sent.
    same = gan_client("upscale", str(photos), str(photos), url=small_server.url)
    assert same.returncode == 2 and "overwritten" in same.stderr


DEFAULT_OPTIONS = {"scale": None, "width": None, "height": None, "fit": None, "detail": None, "strip": "gps"}


def sizes_under(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        name: Image.open(io.BytesIO(data)).size
        for name, data in files_under(folder).items()
        if name[0] != "."
    }


def test_upscale_job_to_a_size_keeps_its_options(server: Server, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    write_image(photos / "a.png", (40, 30))
    write_image(photos / "b.jpg", (24, 16), fmt="JPEG")
    out = tmp_path / "x3"
    run = gan_client("upscale", str(photos), str(out), "--scale", "3", url=server.url)
    assert run.returncode == 0, run.stderr
    assert "done 2, skipped 0, failed 0" in run.stdout
    assert sizes_under(out) == {"a.png": (120, 90), "b.jpg": (72, 48)}
    record = json.loads((out / ".upscale-job.json").read_text())
    # Without --model the job pins the model the server picks for x3: the x2 one, then a resize.
    assert record["model"] == "srresnet-x2" and record["options"] == {**DEFAULT_OPTIONS, "scale": 3.0}

    # Other options into the same folder are refused, saying how to go on; nothing is touched.
    before = files_under(out)
    other = gan_client("upscale", str(photos), str(out), "--scale", "2", url=server.url)
    assert other.returncode == 2
    assert "made with --scale 3, not with --scale 2" in other.stderr and "another OUT_DIR" in other.stderr
    assert files_under(out) == before
    # The same options asked another way (--strip gps is the default) resume it.
    same = gan_client("upscale", str(photos), str(out), "--scale", "3", "--strip", "gps", url=server.url)
    assert same.returncode == 0 and "done 0, skipped 2, failed 0" in same.stdout

    cover = tmp_path / "cover"
    run = gan_client(
        "upscale", str(photos), str(cover), "--width", "60", "--height", "60", "--fit", "cover",
        "--format", "png", url=server.url,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert sizes_under(cover) == {"a.png": (60, 60), "b.png": (60, 60)}
    contain = tmp_path / "contain"
    run = gan_client("upscale", str(photos), str(contain), "--width", "60", "--height", "60", url=server.url)
    assert run.returncode == 0, run.stderr
    assert sizes_under(contain) == {"a.png": (60, 45), "b.jpg": (60, 40)}  # fit contain, the default
    exact = ["--width", "60", "--height", "60", "--fit", "exact"]
    again = gan_client("upscale", str(photos), str(contain), *exact, url=server.url)
    assert again.returncode == 2
    assert "--fit contain, not with --width 60 --height 60 --fit exact" in again.stderr

    detail = tmp_path / "detail"
    run = gan_client("upscale", str(photos), str(detail), "--detail", "0.5", "--strip", "all", url=server.url)
    assert run.returncode == 0, run.stderr
    assert sizes_under(detail) == {"a.png": (160, 120), "b.jpg": (96, 64)}
    record = json.loads((detail / ".upscale-job.json").read_text())
    assert record["model"] == "srresnet-x4"  # the x4 family's faithful model, blended with srgan-x4
    assert record["options"] == {**DEFAULT_OPTIONS, "detail": 0.5, "strip": "all"}
    assert record["detail_model"] == {"model": "srgan-x4", "version": 1}  # both versions pinned

    # What the served models cannot make for any image stops the job before it starts.
    for args, words in (
        (["--scale", "5"], "enlarge by at most 4"),
        (["--detail", "0.5", "--model", "srresnet-x2"], "srresnet-x2 is in no family"),
    ):
        refused = gan_client("upscale", str(photos), str(tmp_path / "refused"), *args, url=server.url)
        assert refused.returncode == 2 and words in refused.stderr, (args, refused.stderr)
    assert not (tmp_path / "refused").exists()


def test_an_upscale_folder_from_before_the_options_was_made_with_the_defaults(
    small_server: Server, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    write_image(photos / "a.png", (20, 12))
    out = tmp_path / "out"
    out.mkdir()
    (out / ".upscale-job.json").write_text('{"model": "srresnet-x2", "version": 1}\n')  # no options
    sized = gan_client("upscale", str(photos), str(out), "--scale", "2", url=small_server.url)
    assert sized.returncode == 2 and "made with the defaults" in sized.stderr
    run = gan_client("upscale", str(photos), str(out), url=small_server.url)
    assert run.returncode == 0 and "done 1, skipped 0" in run.stdout, run.stderr
    assert json.loads((out / ".upscale-job.json").read_text())["options"] == DEFAULT_OPTIONS


def test_upscale_options_that_cannot_work_stop_before_any_request(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9"  # nothing listens: a request would fail with exit 1, not 2
    photos = tmp_path / "photos"
    write_image(photos / "a.png", (20, 12))
    for args, words in (
        (["--scale", "2", "--width", "100"], "either --scale, or --width and/or --height"),
        (["--fit", "cover", "--width", "100"], "--fit applies when both --width and --height"),
        (["--scale", "0.5"], "--scale is the factor to enlarge by, from 1 to 64"),
        (["--width", "0"], "--width is the output's size in pixels"),
        (["--detail", "1.5"], "--detail is a weight"),
        (["--detail", "-0.1"], "--detail is a weight"),
        (["--fit", "stretch"], "invalid choice"),
        (["--strip", "exif"], "invalid choice"),
    ):
        run = gan_client("upscale", str(photos), str(tmp_path / "out"), *args, url=url)
        assert run.returncode == 2 and words in run.stderr, (args, run.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


def test_walk_writes_one_file_per_step(small_server: Server, tmp_path: Path) -> None:
    out = tmp_path / "walk"
    run = gan_client(
        "walk", "--model", "digits-conditional", "--from-seed", "4", "--to-seed", "9", "--steps", "5",
        "--label", "3", "--out", str(out), url=small_server.url,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "wrote 5 images" in run.stdout and "label 3" in run.stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"walk-4-9-{i:03d}.png" for i in range(5)]
    assert all(Image.open(out / name).size == (32, 32) for name in names)
    unknown = gan_client(
        "walk", "--model", "digits-conditional", "--from-seed", "4", "--to-seed", "9", "--label", "eleven",
        "--out", str(tmp_path / "nothing"), url=small_server.url,
    )  # fmt: skip
    assert unknown.returncode == 1 and "unknown label 'eleven'" in unknown.stderr
    assert not (tmp_path / "nothing").exists()


def test_walk_loops_into_frames_or_one_animation(small_server: Server, tmp_path: Path) -> None:
    frames = gan_client(
        "walk", "--model", "digits-conditional", "--seeds", "4,9,2", "--steps", "2",
        "--out", str(tmp_path / "f"), url=small_server.url,
    )  # fmt: skip
    assert frames.returncode == 0, frames.stderr
    assert "through seeds 4 -> 9 -> 2 -> 4" in frames.stdout
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == [f"walk-4-9-2-{i:03d}.png" for i in range(6)]
    out = tmp_path / "anim" / "loop.gif"
    run = gan_client(
        "walk", "--model", "digits-conditional", "--seeds", "4,9,2", "--steps", "2", "--animation", "gif",
        "--frame-ms", "50", "--out", str(out), url=small_server.url,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert f"wrote {out}: 6 frames of 50 ms, through seeds 4 -> 9 -> 2 -> 4" in run.stdout
    assert [p.name for p in out.parent.iterdir()] == ["loop.gif"]  # written whole: no part file left
    image = Image.open(out)
    assert (image.format, image.n_frames, image.info["loop"], image.info["duration"]) == ("GIF", 6, 0, 50)
    image.seek(2)
    first_of_nine = Image.open(tmp_path / "f" / "walk-4-9-2-002.png")
    assert np.array_equal(np.asarray(image.convert("L")), np.asarray(first_of_nine))


def test_walk_arguments_that_cannot_work_stop_before_any_request(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9"  # nothing listens: a request would fail with exit 1, not 2
    for args, words in (
        (["--seeds", "1,2", "--from-seed", "1"], "either --seeds"),
        (["--seeds", "1"], "at least two seeds"),
        (["--from-seed", "1"], "give --from-seed and --to-seed"),
        (["--seeds", "1,2", "--animation", "webp", "--out", str(tmp_path / "walk.gif")], "must end in .webp"),
        (["--seeds", "1,2", "--animation", "apng", "--out", str(tmp_path)], "must end in .png or .apng"),
        (
            ["--seeds", "1,2", "--animation", "gif", "--format", "png", "--out", str(tmp_path / "w.gif")],
            "--format",
        ),
        (["--seeds", "1,2", "--frame-ms", "50", "--out", str(tmp_path / "w")], "give --animation too"),
    ):
        argv = args if "--out" in args else [*args, "--out", str(tmp_path / "w")]
        run = gan_client("walk", *argv, url=url)
        assert run.returncode == 2 and words in run.stderr, (args, run.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
