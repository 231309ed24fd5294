"""The training loop end to end: artifacts, determinism, resume, Ctrl-C, run-directory safety."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from training.artifacts import read_jsonl
from training.config import ConfigError, load_config
from training.models import load_generator
from training.runtime import RunError, lr_scale
from training.train import train

REPO = Path(__file__).parents[2]
# Small but real: every stabilizer the loop has, on the toy ring.
RING = [
    "data=ring8",
    "model=mlp",
    "latent_dim=4",
    "g_width=16",
    "d_width=16",
    "batch_size=32",
    "log_every=5",
    "sample_every=10",
    "eval_every=10",
    "eval_samples=200",
    "checkpoint_every=10",
    "ema_decay=0.9",
]


def run_cli(
    *args: str, cwd: Path = REPO, timeout: float = 120, module: str = "training"
) -> subprocess.CompletedProcess[str]:
    """`python -m MODULE ARGS` in a fresh process (gan-train by default, or gan-export)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def train_records(run_dir: Path) -> list[dict[str, Any]]:
    # samples/s depends on the machine's load, everything else on the seed
    return [
        {k: v for k, v in r.items() if k != "samples_per_s"}
        for r in read_jsonl(run_dir / "metrics.jsonl")
        if r["event"] == "train"
    ]


def test_dry_run_writes_every_artifact(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_cli("--config", "configs/digits_cdcgan.toml", "--dry-run", "--out", str(out))
    assert result.returncode == 0, result.stderr
    final = json.loads(result.stdout)
    assert {"fd", "fd_real_baseline", "accuracy", "precision", "recall", "cas", "memorised_share"} <= set(
        final
    )
    # A dry run judges accuracy on one draw of the training split's size, not accuracy_draws (10).
    assert final["accuracy_samples"] == final["eval_samples"] == 1438
    for name in ("config.toml", "config.json", "metrics.jsonl", "train.log", "eval.json", "generator.pt"):
        assert (out / name).is_file(), name
    assert (out / "samples" / "latest.png").is_file() and (out / "plots" / "training.png").is_file()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000002.pt", "step_00000003.pt"]
    records = train_records(out)
    expected = {
        "step",
        "d_loss",
        "g_loss",
        "d_real",
        "d_fake",
        "g_grad_norm",
        "d_grad_norm",
        "diversity_ratio",
        "class_diversity_ratio",  # conditional: the worst class's spread over its real spread
        "class_diversity_worst",
    }
    assert expected <= set(records[0])
    assert 0 <= records[0]["class_diversity_worst"] < 10
    assert [r["step"] for r in records] == [1, 2, 3]
    # the served file: rebuilt from its own constructor arguments, conditional, in [-1, 1]
    g, meta = load_generator(out / "generator.pt")
    assert meta["kind"] == "dcgan" and meta["data"]["class_names"] == [str(i) for i in range(10)]
    images = g(torch.randn(4, g.config.latent_dim), torch.tensor([0, 1, 2, 3]))
    assert images.shape == (4, 1, 32, 32) and images.abs().max() <= 1
    # the written config reads back as the run's config
    assert load_config(out / "config.toml").to_dict() == json.loads((out / "config.json").read_text())


def test_console_script_and_config_errors(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "gan-train"
    assert script.is_file()
    bad = subprocess.run(
        [str(script), "--config", "configs/ring8.toml", "--set", "los=hinge", "--out", str(tmp_path / "x")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "unknown config key 'los' (did you mean 'loss'?)" in bad.stderr
    assert not (tmp_path / "x").exists()  # nothing written for a rejected config
    missing = run_cli("--config", "configs/nope.toml")
    assert missing.returncode == 2 and "config file not found" in missing.stderr


def test_same_seed_same_numbers(tmp_path: Path) -> None:
    cfg = load_config(None, [*RING, "steps=20", "loss=wgan-gp", "instance_noise=0.1", "r1_gamma=1.0"])
    first = train(cfg, tmp_path / "a")
    second = train(cfg, tmp_path / "b")
    assert first["hq_fraction"] == second["hq_fraction"]
    assert train_records(tmp_path / "a") == train_records(tmp_path / "b")
    a, _ = load_generator(tmp_path / "a" / "generator.pt")
    b, _ = load_generator(tmp_path / "b" / "generator.pt")
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    other = train(load_config(None, [*RING, "steps=20", "loss=wgan-gp", "seed=1"]), tmp_path / "c")
    c, _ = load_generator(tmp_path / "c" / "generator.pt")
    assert not torch.equal(next(iter(a.state_dict().values())), next(iter(c.state_dict().values())))
    assert other  # evaluated


@pytest.mark.parametrize(
    "extra",
    [
        ["loss=hinge", "spectral_norm=true", "lr_schedule=linear"],
        [
            "data=digits",
            "model=dcgan",
            "resolution=8",
            "conditional=true",
            "loss=nonsaturating",
            "g_width=4",
            "d_width=4",
            "classifier_epochs=1",
            "label_smoothing=0.1",
            "grad_clip=1.0",
            "eval_every=0",
        ],
    ],
    ids=["ring8-hinge", "digits-dcgan"],
)
def test_resume_equals_an_uninterrupted_run(tmp_path: Path, extra: list[str]) -> None:
    cfg = load_config(None, [*RING, *extra, "steps=20"])
    train(cfg, tmp_path / "whole")
    # The state a crash after step 10 leaves: the run directory up to its step-10 checkpoint.
    parts = tmp_path / "parts"
    shutil.copytree(tmp_path / "whole", parts)
    for name in ("generator.pt", "eval.json", "checkpoints/step_00000020.pt"):
        (parts / name).unlink()
    train(cfg, parts, resume=True)
    assert train_records(tmp_path / "whole") == train_records(tmp_path / "parts")
    a = torch.load(tmp_path / "whole" / "checkpoints" / "step_00000020.pt", weights_only=False)
    b = torch.load(tmp_path / "parts" / "checkpoints" / "step_00000020.pt", weights_only=False)
    for key in ("generator", "discriminator", "generator_ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name}"
    assert a["opt_g"]["state"].keys() == b["opt_g"]["state"].keys()


def test_run_directory_is_never_mixed_up(tmp_path: Path) -> None:
    cfg = load_config(None, [*RING, "steps=10"])
    train(cfg, tmp_path / "run")
    with pytest.raises(RunError, match="already holds a run: pass --resume"):
        train(cfg, tmp_path / "run")
    with pytest.raises(RunError, match="--resume: no checkpoint"):
        train(cfg, tmp_path / "empty", resume=True)
    changed = load_config(None, [*RING, "steps=20", "loss=hinge", "g_width=32"])
    with pytest.raises(
        ConfigError,
        match=r"--resume: .*g_width, loss differ from the saved run; only accuracy_draws, cache_dir",
    ):
        train(changed, tmp_path / "run", resume=True)
    # A run saved before a key existed resumes: the key was at its default there.
    saved = tmp_path / "run" / "config.json"
    values = json.loads(saved.read_text())
    del values["standing_batches"]
    saved.write_text(json.dumps(values))
    train(load_config(None, [*RING, "steps=12"]), tmp_path / "run", resume=True)
    assert train_records(tmp_path / "run")[-1]["step"] == 12
    with pytest.raises(ConfigError, match="--resume: standing_batches differ"):
        train(load_config(None, [*RING, "steps=14", "standing_batches=3"]), tmp_path / "run", resume=True)


def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [
        "--config",
        "configs/ring8.toml",
        "--out",
        str(out),
        "--set",
        "steps=1000000",
        "--set",
        "log_every=10",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "training", *args],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(read_jsonl(out / "metrics.jsonl")) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "checkpoint saved at step" in stderr
    saved = sorted((out / "checkpoints").iterdir())
    assert len(saved) == 1
    step = int(saved[0].stem.split("_")[1])
    assert step >= 30
    # an interrupted run can be evaluated from its checkpoint's EMA generator
    evaluated = run_cli("eval", str(out), "--samples", "500")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["source"] == saved[0].name
    assert json.loads((out / "eval.json").read_text())["modes_total"] == 8
    resumed = run_cli(*args[:4], "--set", f"steps={step + 10}", "--set", "log_every=10", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {saved[0]} at step {step}" in resumed.stderr
    assert (out / "generator.pt").is_file()


def test_linear_learning_rate_schedule() -> None:
    cfg = load_config(None, ["steps=100", "lr_schedule=linear", "lr_decay_start=0.5"])
    assert [lr_scale(cfg, s) for s in (0, 49, 50, 75, 99)] == [1.0, 1.0, 1.0, 0.5, pytest.approx(0.02)]
    assert lr_scale(load_config(None, ["steps=100"]), 99) == 1.0


def write_class_folder(images: Path, side: int) -> Path:
    """Two classes (red, blue) of six discs each, about side x side pixels, PNG and JPEG."""
    from PIL import Image, ImageDraw

    for label, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (images / label).mkdir(parents=True)
        for i in range(6):
            img = Image.new("RGB", (side + 4 + i, side), "black")
            ImageDraw.Draw(img).ellipse((4 + i, 4, side - 6 + i, side - 6), fill=colour)
            img.save(images / label / f"{i}.{'png' if i % 2 else 'jpg'}")
    return images


def test_folder_recipe_trains_on_a_users_images(tmp_path: Path) -> None:
    images = write_class_folder(tmp_path / "images", 36)
    (images / "red" / "corrupt.png").write_bytes(b"not an image")
    out = tmp_path / "run"
    result = run_cli(
        "--config",
        "configs/folder_example.toml",
        "--set",
        f"data=folder:{images}",
        "--dry-run",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert f"{images / 'red' / 'corrupt.png'}: UnidentifiedImageError" in result.stderr
    g, meta = load_generator(out / "generator.pt")
    assert meta["data"]["class_names"] == ["blue", "red"] and meta["data"]["skipped_files"] == 1
    assert g(torch.randn(2, g.config.latent_dim), torch.tensor([0, 1])).shape == (2, 3, 32, 32)
    strict = run_cli(
        "--config",
        "configs/folder_example.toml",
        "--set",
        f"data=folder:{images}",
        "--set",
        "bad_files=error",
        "--dry-run",
        "--out",
        str(tmp_path / "strict"),
    )
    assert strict.returncode == 2 and "corrupt.png" in strict.stderr and "bad_files" in strict.stderr


def test_failure_demo_reports_vanishing_gradients(tmp_path: Path) -> None:
    # The minimax demo recipe, cut short: D rejects every fake within ~100 steps.
    cfg = load_config(
        REPO / "configs" / "ring8_minimax.toml", ["steps=150", "eval_every=0", "sample_every=150"]
    )
    train(cfg, tmp_path / "run")
    warnings = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["event"] == "warning"]
    assert "vanishing_gradients" in {w["kind"] for w in warnings}
    assert "vanishing generator gradients" in (tmp_path / "run" / "train.log").read_text()
