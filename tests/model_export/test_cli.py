"""gan-export as users run it: a separate process, its output, its exit codes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from model_export.export import ExportResult
from model_repository.repository import list_versions, read_version
from tests.training.test_train import run_cli

REPO = Path(__file__).resolve().parents[2]


def gan_export(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, module="model_export", timeout=300)


def test_export_while_a_reader_watches(generator_files: dict[str, Path], tmp_path: Path) -> None:
    """A reader polling the repository during a real export never sees a partial version."""
    repo = tmp_path / "models"
    command = [sys.executable, "-m", "model_export", str(generator_files["srresnet-x2"])]
    command += ["--repo", str(repo), "--name", "sr", "--no-card"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    polls, seen_staging = 0, False
    while process.poll() is None:
        polls += 1
        seen_staging |= (repo / "sr").is_dir() and any(
            p.name.startswith(".") for p in (repo / "sr").iterdir()
        )
        for version in list_versions(repo, "sr"):
            read_version(repo, "sr", version)  # raises ManifestError on a partial version
        time.sleep(0.005)
    stdout, stderr = process.communicate()
    assert process.returncode == 0, stderr
    assert polls > 10 and seen_staging  # the reader really watched the export as it happened
    assert f"published {repo / 'sr' / '1'}" in stdout and "parity max abs error" in stdout
    assert list_versions(repo, "sr") == [1]
    assert sorted(p.name for p in (repo / "sr").iterdir()) == ["1"]  # staging gone


def test_console_script_and_next_version(generator_files: dict[str, Path], tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("gan-export")
    args = [str(generator_files["dcgan-transposed"]), "--repo", str(tmp_path), "--name", "g", "--no-card"]
    for expected in (1, 2):
        result = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=300, cwd=REPO)
        assert result.returncode == 0, result.stderr
        assert f"published {tmp_path / 'g' / str(expected)}" in result.stdout
    assert read_version(tmp_path, "g", 2)["version"] == 2


def test_errors_exit_2_with_one_line(generator_files: dict[str, Path], tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 100)
    cases = [
        ([str(garbage), "--repo", str(tmp_path), "--name", "g"], "not a readable PyTorch checkpoint"),
        (
            [str(generator_files["dcgan-transposed"]), "--repo", str(tmp_path), "--name", "../g"],
            "is not allowed",
        ),
        (
            [
                str(generator_files["dcgan-transposed"]),
                "--repo",
                str(tmp_path),
                "--name",
                "g",
                "--opset",
                "9",
            ],
            "opset must be between 17",
        ),
        ([str(tmp_path / "missing.pt"), "--repo", str(tmp_path), "--name", "g"], "no such file"),
    ]
    for args, message in cases:
        result = gan_export(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("gan-export: error: ") and message in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "g").exists()


def test_existing_version_is_refused_before_work(exported: dict[str, ExportResult], tmp_path: Path) -> None:
    shutil.copytree(exported["dcgan-transposed"].directory, tmp_path / "g" / "1")
    before = (tmp_path / "g" / "1" / "model.onnx").read_bytes()
    result = gan_export(
        str(tmp_path / "nothing-needed.pt"), "--repo", str(tmp_path), "--name", "g", "--version", "1"
    )
    assert result.returncode == 2 and "g version 1 already exists" in result.stderr
    assert (tmp_path / "g" / "1" / "model.onnx").read_bytes() == before


def test_check_command(exported: dict[str, ExportResult], tmp_path: Path) -> None:
    for arch in ("srresnet-x2", "dcgan-conditional"):
        shutil.copytree(exported[arch].directory, tmp_path / arch / "1")
    result = gan_export("check", "--repo", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "ok   dcgan-conditional/1: generate" in result.stdout
        and "ok   srresnet-x2/1: upscale" in result.stdout
    )

    model = tmp_path / "srresnet-x2" / "1" / "model.onnx"
    model.write_bytes(model.read_bytes()[:-1] + b"\x01")
    result = gan_export("check", "--repo", str(tmp_path))
    assert result.returncode == 1
    assert "FAIL srresnet-x2/1:" in result.stdout and "sha256 does not match" in result.stdout
    assert "ok   dcgan-conditional/1" in result.stdout

    result = gan_export("check", "--repo", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "no such directory" in result.stderr
