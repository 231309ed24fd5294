"""scripts/gpu/, rehearsed without a GPU: the big wheel cut into pieces, carried one per "call" into
another folder, joined and verified there (a missing or corrupt piece refused, by name); the plan of
which wheels the device lacks; and check.sh --cpu --quick end to end (real service, real ONNX
Runtime on the CPU, the real bench), with its files where the device tool would collect them."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.gpu import pieces, resolve
from tests.bench.gpu_report import check_quick_report

ROOT = Path(__file__).resolve().parents[2]
GPU = ROOT / "scripts" / "gpu"
PIECE = 1024 * 1024  # a small piece size (prepare.sh's is 45 MiB), through GPU_PIECE_BYTES
WHEEL = "fake_gpu-1.0-cp312-cp312-manylinux_2_28_x86_64.whl"


def run(
    *args: str | Path, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(a) for a in args], cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def pieces_py(
    *args: str | Path, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    return run(sys.executable, GPU / "pieces.py", *args, env=env, check=check)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def prepared(tmp_path: Path) -> tuple[Path, bytes]:
    """A .gpu-wheels/ as prepare.sh leaves it, for a 3 MiB fake wheel cut into 1 MiB pieces."""
    root = tmp_path / "here"
    (root / "small").mkdir(parents=True)
    data = os.urandom(3 * PIECE + 12345)
    (root / WHEEL).write_bytes(data)
    (root / "small" / "tiny-1.0-py3-none-any.whl").write_bytes(os.urandom(2000))
    pieces_py("split", root / WHEEL, root / "pieces", env={"GPU_PIECE_BYTES": str(PIECE)})
    pieces_py("sums", root)
    return root, data


def carry(source: Path, dest: Path, name: str) -> None:
    """One device call: one path carried into the warm machine's copy of the tree."""
    (dest / name).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / name, dest / name)


def test_split_names_and_bytes_match_coreutils_split(prepared: tuple[Path, bytes], tmp_path: Path) -> None:
    root, data = prepared
    ours = sorted(p.name for p in (root / "pieces").iterdir())
    assert ours == [f"{WHEEL}.part-{s}" for s in ("aa", "ab", "ac", "ad")]
    theirs = tmp_path / "split"
    theirs.mkdir()
    subprocess.run(["split", "-b", str(PIECE), str(root / WHEEL), str(theirs / f"{WHEEL}.part-")], check=True)
    assert sorted(p.name for p in theirs.iterdir()) == ours
    for name in ours:
        assert (theirs / name).read_bytes() == (root / "pieces" / name).read_bytes()
    # SHA256SUMS: the whole wheel, each piece, each small wheel, in sha256sum's format.
    sums = (root / "SHA256SUMS").read_text()
    assert f"{sha(data)}  {WHEEL}\n" in sums
    assert len(sums.splitlines()) == 1 + 4 + 1
    subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=root, check=True)
    # Re-run (prepare.sh is idempotent): every piece kept, none rewritten.
    again = pieces_py("split", root / WHEEL, root / "pieces", env={"GPU_PIECE_BYTES": str(PIECE)})
    assert again.stdout.count("kept ") == 4 and "wrote" not in again.stdout


def test_pieces_carried_one_per_call_join_to_the_wheel(prepared: tuple[Path, bytes], tmp_path: Path) -> None:
    root, data = prepared
    there = tmp_path / "there"  # the device machine's tree, kept warm between calls
    names = sorted(p.name for p in (root / "pieces").iterdir())
    for number, name in enumerate(names, 1):
        carry(root, there, f"pieces/{name}")
        carry(root, there, "SHA256SUMS")  # every call carries it: its status says what is there
        status = pieces_py("status", there).stdout
        assert f"{number} of 4 pieces here" in status, status
    assert "all here" in status
    carry(root, there, "small/tiny-1.0-py3-none-any.whl")  # the last call's small wheels
    pieces_py("verify", there)
    joined = tmp_path / "joined"
    pieces_py("join", there, joined)
    assert sha((joined / WHEEL).read_bytes()) == sha(data)
    # Joined again on a warm machine: kept, not rewritten.
    assert "already joined" in pieces_py("join", there, joined).stdout


def test_a_missing_piece_is_refused_by_name(prepared: tuple[Path, bytes], tmp_path: Path) -> None:
    root, _ = prepared
    there = tmp_path / "there"
    shutil.copytree(root, there)
    (there / "pieces" / f"{WHEEL}.part-ab").unlink()
    done = pieces_py("join", there, tmp_path / "joined", check=False)
    assert done.returncode == 1
    assert f"missing piece 2 of 4 of {WHEEL}: {there}/pieces/{WHEEL}.part-ab" in done.stderr
    assert not (tmp_path / "joined" / WHEEL).exists()
    assert "still to carry: ab" in pieces_py("status", there).stdout


def test_a_corrupt_piece_is_refused_by_name(prepared: tuple[Path, bytes], tmp_path: Path) -> None:
    root, _ = prepared
    there = tmp_path / "there"
    shutil.copytree(root, there)
    piece = there / "pieces" / f"{WHEEL}.part-ac"
    damaged = bytearray(piece.read_bytes())
    damaged[1000] ^= 0xFF
    piece.write_bytes(bytes(damaged))
    done = pieces_py("join", there, tmp_path / "joined", check=False)
    assert done.returncode == 1
    assert f"corrupt piece 3 of 4 of {WHEEL}: {piece} has sha256" in done.stderr
    assert "carry it again" in done.stderr


def test_check_sh_refuses_a_missing_piece_before_installing(
    prepared: tuple[Path, bytes], tmp_path: Path
) -> None:
    """The device's last call on a machine that went cold after call 2: said at once, by name."""
    root, _ = prepared
    there = tmp_path / "there"
    shutil.copytree(root, there)
    for suffix in ("ac", "ad"):
        (there / "pieces" / f"{WHEEL}.part-{suffix}").unlink()
    out = tmp_path / "out"
    env = {
        "GPU_WHEELS_DIR": str(there),
        "GPU_SITE": str(tmp_path / "site"),
        "OUT": str(out),
        "PYTHON": sys.executable,
    }
    done = run("bash", GPU / "check.sh", "--out", tmp_path / "gpu.json", env=env, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"missing piece 3 of 4 of {WHEEL}" in done.stdout and f"{WHEEL}.part-ad" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert [(s["step"], s["status"]) for s in summary["steps"]] == [("verify", "fail")]
    assert not (tmp_path / "site").exists()


def test_plan_carries_only_what_the_image_lacks(tmp_path: Path) -> None:
    kinds = tmp_path / "KINDS.md"
    image = (
        "absl-py, anyio, attrs, click, h11, idna, numpy, packaging, pillow, protobuf, typing-extensions, zipp"
    )
    kinds.write_text(f"# kinds\n\n## Python packages already there\n\nimage 'cuda'. Packages: {image}.\n")
    assert resolve.image_packages(kinds) >= {"absl-py", "typing-extensions", "zipp"}

    def item(name: str, version: str, filename: str) -> dict:
        info = {"url": f"https://files/{filename}", "archive_info": {"hashes": {"sha256": "0" * 64}}}
        return {"metadata": {"name": name, "version": version}, "download_info": info}

    report = tmp_path / "report.json"
    report.write_text(
        json.dumps(
            {
                "install": [
                    item("pydantic_core", "2.5", "pydantic_core-2.5-cp312-cp312-manylinux_2_17_x86_64.whl"),
                    item(
                        "onnxruntime-gpu",
                        "1.31.1",
                        "onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl",
                    ),
                    item("typing_extensions", "4.16", "typing_extensions-4.16-py3-none-any.whl"),
                    item("numpy", "2.5", "numpy-2.5-cp312-cp312-manylinux_2_28_x86_64.whl"),
                ]
            }
        )
    )
    rows = resolve.plan(report, resolve.image_packages(kinds), "onnxruntime-gpu", set())
    assert [(r[0], r[1]) for r in rows] == [("big", "onnxruntime-gpu"), ("small", "pydantic-core")]
    rows = resolve.plan(report, resolve.image_packages(kinds), "onnxruntime-gpu", {"typing-extensions"})
    assert ("small", "typing-extensions") in [(r[0], r[1]) for r in rows]
    # The committed snapshot of the image's list parses too (prepare.sh's fallback).
    assert {"torch", "onnxruntime", "uvloop"} <= resolve.image_packages(GPU / "image-packages.txt")
    # The pin prepare.sh downloads is the one pyproject.toml's gpu extra holds, exactly.
    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", resolve.pin("gpu", "onnxruntime-gpu"))
    with pytest.raises(resolve.Refused, match="pin it with =="):
        resolve.pin("serve", "onnxruntime")  # a range, not a pin: prepare.sh refuses it
    # The piece size leaves this working tree, SHA256SUMS and the margin room in one call.
    size, tree = resolve.piece_size(resolve.LIMIT, resolve.MARGIN)
    assert size <= 45 * resolve.MIB and size % resolve.MIB == 0
    assert tree + size + resolve.SUMS_ROOM + resolve.MARGIN <= resolve.LIMIT


def test_suffixes_follow_split() -> None:
    assert [pieces.suffix(i) for i in (0, 1, 25, 26, 675)] == ["aa", "ab", "az", "ba", "zz"]
    with pytest.raises(pieces.Refused):
        pieces.suffix(676)


def test_cpu_never_overwrites_the_committed_gpu_figures() -> None:
    done = run("bash", GPU / "check.sh", "--cpu", "--out", "bench/results/gpu.json", check=False)
    assert done.returncode == 2 and "would overwrite bench/results/gpu.json" in done.stderr


@pytest.mark.slow
def test_check_sh_cpu_quick_rehearsal(prepared: tuple[Path, bytes], tmp_path: Path) -> None:
    """check.sh --cpu --quick, to completion: wheels verified, sanity, the gpu tests (skipped here),
    the quick bench on the CPU provider; the files come back as the device tool returns them."""
    root, _ = prepared
    committed = ROOT / "bench" / "results" / "gpu.json"
    before = committed.read_bytes() if committed.exists() else None
    out = tmp_path / "out"
    env = {"PYTHON": sys.executable, "GPU_WHEELS_DIR": str(root), "OUT": str(out)}
    done = run(
        "bash", GPU / "check.sh", "--cpu", "--quick", "--out", tmp_path / "gpu.json", env=env, check=False
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    check_quick_report(report)  # every section, positive figures, all on CPU
    summary = json.loads((out / "summary.json").read_text())
    steps = {s["step"]: s["status"] for s in summary["steps"]}
    assert steps["verify"] == "ok" and steps["sanity"] == "ok" and steps["bench"] == "ok", summary
    assert steps["pytest"] in ("ok", "skipped"), summary  # skipped: no gpu tests in this tree yet
    assert re.search(r"^\[gpu-check \+ *\d+s\] bench: ok", done.stdout, re.MULTILINE)
    # What the device tool would bring back: at most 8 files, plain names, gpu.json among them.
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and "gpu.json" in files and "check.log" in files, files
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", name) for name in files)
    assert json.loads((out / "gpu.json").read_text())["provider"] == "CPU"
    assert (committed.read_bytes() if committed.exists() else None) == before
