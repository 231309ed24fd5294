"""The same command under torchrun: 2 CPU processes with DistributedDataParallel over gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training.test_style import DIGITS
from training.artifacts import read_jsonl
from training.models import load_generator

REPO = Path(__file__).parents[2]


def torchrun(out: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    args += ["-m", "training", "--config", "configs/ring8.toml", "--out", str(out)]
    for item in ("steps=20", "log_every=5", "checkpoint_every=10", "eval_every=0", *overrides):
        args += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("loss", ["wgan-gp", "hinge"])
def test_two_process_ddp_run(tmp_path: Path, loss: str) -> None:
    # wgan-gp: the gradient penalty's double backward through DDP; the loop checks at every
    # checkpoint that both processes hold identical G and D, so a finished run means they did.
    out = tmp_path / loss
    result = torchrun(out, f"loss={loss}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "batch 128 x 2 process(es)" in result.stderr  # the global batch of 256 split in two
    # rank 0 alone writes: one record per log step, one final eval, two checkpoints
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in records if r["event"] == "train"] == [5, 10, 15, 20]
    assert [r["event"] for r in records].count("eval") == 1
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000010.pt", "step_00000020.pt"]
    _, meta = load_generator(out / "generator.pt")
    assert meta["training"]["batch_size"] == 256
    assert json.loads((out / "eval.json").read_text())["modes_total"] == 8


def test_batch_must_split_over_processes(tmp_path: Path) -> None:
    result = torchrun(tmp_path / "odd", "batch_size=255")
    assert result.returncode != 0
    assert "batch_size: 255 does not split over 2 processes" in result.stderr


def test_two_process_style_run(tmp_path: Path) -> None:
    # A style G under DDP: its noise images and mixing draws come from each rank's own stream,
    # its running mean of w is a buffer (broadcast from rank 0); the replica check at each
    # checkpoint holds G and D identical on both ranks.
    out = tmp_path / "style"
    overrides = [*DIGITS, "batch_size=32", "loss=nonsaturating"]
    result = torchrun(out, *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "batch 16 x 2 process(es)" in result.stderr
    G, meta = load_generator(out / "generator.pt")
    assert meta["kind"] == "style" and G.w_avg.abs().sum() > 0  # type: ignore[operator]
