"""The training image's entrypoint (docker/train-export.sh), run outside a container: the image
itself cannot be built here (its torch comes from PyTorch's wheel index, which is not reachable).
A dry run trains and publishes version 1; a second run resumes the run and publishes version 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.live_server import REPO

SCRIPT = REPO / "docker" / "train-export.sh"


def train_export(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MODELS_DIR": str(tmp_path / "models"),
        "RUNS_DIR": str(tmp_path / "runs"),
    }
    return subprocess.run(
        ["sh", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


def test_train_then_export_into_the_model_repository(tmp_path: Path) -> None:
    args = ["--config", "configs/digits_dcgan.toml", "--name", "tiny-digits", "--dry-run"]
    first = train_export(tmp_path, *args)
    assert first.returncode == 0, first.stderr[-3000:]
    manifest = json.loads((tmp_path / "models" / "tiny-digits" / "1" / "manifest.json").read_text())
    assert manifest["task"] == "generate" and manifest["name"] == "tiny-digits"
    assert (tmp_path / "runs" / "tiny-digits" / "checkpoints").is_dir()

    second = train_export(tmp_path, *args)  # the run has checkpoints: it resumes, then version 2
    assert second.returncode == 0, second.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "models" / "tiny-digits").iterdir()) == ["1", "2"]


def test_usage_errors(tmp_path: Path) -> None:
    run = train_export(tmp_path, "--config", "configs/digits_dcgan.toml")
    assert run.returncode == 2 and "usage: train-export" in run.stderr
    assert not (tmp_path / "models").exists()
