"""Super-resolution training end to end: both stages, resume, evaluation, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.training.test_train import run_cli
from training.artifacts import read_jsonl
from training.config import ConfigError
from training.evaluate_run import evaluate_run
from training.models import load_generator
from training.runtime import RunError
from training.sr.config import SRConfig, load_any_config
from training.sr.train import train_sr

# Small but real: the shipped recipe's code paths with a tiny network and few held-out images.
TINY = [
    "data=sr_skimage",
    "g_width=8",
    "g_blocks=1",
    "d_width=4",
    "batch_size=4",
    "patch_size=32",
    "eval_tile=48",
    "eval_overlap=16",
    "eval_max_images=1",
    "ema_decay=0.9",
]
SCORES = {
    "psnr_y",
    "psnr_y_bicubic",
    "psnr_gain_db",
    "ssim",
    "ssim_bicubic",
    "niqe",
    "niqe_bicubic",
    "niqe_hr",
}
EVAL_KEYS = {f"{which}_{key}" for which in ("validation", "test") for key in SCORES}


def tiny(*overrides: str) -> SRConfig:
    cfg = load_any_config(None, [*TINY, *overrides])
    assert isinstance(cfg, SRConfig)
    return cfg


def test_dry_run_of_both_stages_through_the_cli(tmp_path: Path) -> None:
    stage1 = tmp_path / "x2"
    result = run_cli("--dry-run", "--out", str(stage1), *(f"--set={s}" for s in [*TINY, "scale=2"]))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) >= EVAL_KEYS and report["validation_images"] == report["test_images"] == 1
    assert report["validation_set"] == "scikit-image chelsea"  # eval_max_images=1: the first one
    assert report["test_set"] == "1 photograph of training/sr/photos/test (from Debian packages)"
    for name in ("config.toml", "metrics.jsonl", "generator.pt", "eval.json", "train.log"):
        assert (stage1 / name).is_file(), name
    assert (stage1 / "plots" / "training.png").is_file()
    assert (stage1 / "samples" / "latest.png").is_file()
    assert [p.name for p in (stage1 / "eval" / "validation").iterdir()] == ["chelsea.png"]
    assert [p.name for p in (stage1 / "eval" / "test").iterdir()] == ["photos_aitzgorri.png"]
    # During training only the validation images are scored; the test images once, at the end.
    evals = [r for r in read_jsonl(stage1 / "metrics.jsonl") if r["event"] == "eval"]
    assert all(not any(k.startswith("test_") for k in r) for r in evals[:-1])
    generator, meta = load_generator(stage1 / "generator.pt")
    assert meta["kind"] == "srresnet" and meta["training"]["task"] == "upscale"
    assert meta["config"]["scale"] == 2
    assert meta["metrics"]["test_psnr_y"] == pytest.approx(report["test_psnr_y"])
    assert meta["metrics"]["validation_set"] == report["validation_set"]
    assert generator(torch.rand(1, 3, 5, 7)).shape == (1, 3, 10, 14)

    stage2 = tmp_path / "srgan"
    overrides = [*TINY, "scale=2", "stage=srgan", f"init_from={stage1}"]
    result = run_cli("--dry-run", "--out", str(stage2), *(f"--set={s}" for s in overrides))
    assert result.returncode == 0, result.stderr
    train = [r for r in read_jsonl(stage2 / "metrics.jsonl") if r["event"] == "train"]
    assert {"d_loss", "g_adv", "feature_loss", "d_accuracy", "pixel_loss"} <= set(train[0])
    assert json.loads((stage2 / "eval.json").read_text())["test_niqe"] > 0
    _, meta2 = load_generator(stage2 / "generator.pt")
    assert meta2["training"]["stage"] == "srgan" and meta2["training"]["init_from"] == str(stage1)


def test_srgan_starts_from_the_stage1_weights(tmp_path: Path) -> None:
    train_sr(
        tiny("scale=2", "steps=4", "checkpoint_every=4", "sample_every=4", "log_every=2"), tmp_path / "s1"
    )
    stage1, _ = load_generator(tmp_path / "s1" / "generator.pt")
    # One step at a negligible rate: the srgan generator is still (almost) the stage-1 one.
    train_sr(
        tiny("scale=2", "stage=srgan", f"init_from={tmp_path / 's1'}", "steps=1", "g_lr=1e-9", "d_lr=1e-9"),
        tmp_path / "s2",
    )
    stage2, _ = load_generator(tmp_path / "s2" / "generator.pt")
    for a, b in zip(stage1.state_dict().values(), stage2.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_training_improves_on_bicubic_and_resume_is_exact(tmp_path: Path) -> None:
    # device=cpu: CUDA's convolution kernels are not bit-reproducible, CPU ones are.
    overrides = ("scale=2", "device=cpu", "g_lr=2e-3", "lr_schedule=constant", "log_every=25")
    run = (*overrides, "steps=150", "checkpoint_every=75", "sample_every=150")
    full = train_sr(tiny(*run), tmp_path / "full")
    # A tiny net already beats bicubic on the validation image after 150 steps (it starts equal).
    assert full["validation_psnr_gain_db"] > 0

    train_sr(tiny(*run, "steps=75"), tmp_path / "split")  # the later steps=75 wins
    resumed = train_sr(tiny(*run), tmp_path / "split", resume=True)
    a, _ = load_generator(tmp_path / "full" / "generator.pt")
    b, _ = load_generator(tmp_path / "split" / "generator.pt")
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    assert resumed["test_psnr_y"] == full["test_psnr_y"]


def test_eval_command_rescores_a_run(tmp_path: Path) -> None:
    train_sr(tiny("scale=4", "patch_size=32"), tmp_path / "run", dry_run=True)
    first = json.loads((tmp_path / "run" / "eval.json").read_text())
    again = evaluate_run(tmp_path / "run")
    assert again["source"] == "generator.pt"
    assert again["test_psnr_y"] == pytest.approx(first["test_psnr_y"])
    # --record: the figures become generator.pt's metrics (what gan-export writes in the
    # manifest); the weights and the step stay.
    weights, before = load_generator(tmp_path / "run" / "generator.pt")
    first_step = before["metrics"]["step"]
    # The generator file names the data recipe: augmentation and degradations (all off here).
    assert {
        before["training"][k] for k in ("colour_augment", "degrade_blur", "degrade_noise", "degrade_jpeg")
    } == {0}
    # A model trained when the held-out sets were other images: the data summary follows the
    # figures, so a manifest names the images its numbers come from.
    payload = torch.load(tmp_path / "run" / "generator.pt", weights_only=True)
    payload["data"]["validation_images"] = ["an older validation image"]
    torch.save(payload, tmp_path / "run" / "generator.pt")
    (tmp_path / "run" / "eval.json").unlink()
    evaluate_run(tmp_path / "run", record=True)
    rescored, after = load_generator(tmp_path / "run" / "generator.pt")
    assert after["data"] == before["data"] and "chelsea" in after["data"]["validation_images"]
    assert after["metrics"]["step"] == first_step and "source" not in after["metrics"]
    assert after["metrics"]["test_psnr_y"] == pytest.approx(first["test_psnr_y"])
    assert (tmp_path / "run" / "eval.json").is_file()
    for x, y in zip(weights.state_dict().values(), rescored.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    with pytest.raises(ConfigError, match="--samples"):
        evaluate_run(tmp_path / "run", samples=100)
    (tmp_path / "run" / "generator.pt").unlink()  # an interrupted run: the newest checkpoint
    assert evaluate_run(tmp_path / "run")["source"].startswith("step_")
    with pytest.raises(FileNotFoundError, match=r"--record needs the finished run's generator\.pt"):
        evaluate_run(tmp_path / "run", record=True)


def test_user_folder_training(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        coarse = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((88, 72), Image.Resampling.BICUBIC).save(
            root / f"p{i}.jpg", quality=95
        )
    result = train_sr(
        tiny(
            f"data=sr_folder:{root}", "scale=4", "degrade_blur=1.0", "degrade_noise=0.02", "degrade_jpeg=50"
        ),
        tmp_path / "run",
        dry_run=True,
    )
    assert result["validation_images"] == result["test_images"] == 1
    names = {f"p{i}.jpg" for i in range(5)}
    assert set(result["per_image"]["validation"]) <= names and set(result["per_image"]["test"]) <= names
    assert result["test_set"] == f"1 image of {root} (test split)"
    # 88x72 images are smaller than two NIQE blocks once shaved: PSNR and SSIM only.
    assert "test_psnr_y" in result and "test_niqe" not in result


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["scale=3"], "scale: must be one of 2, 4, got 3"),
        (["scale=4", "patch_size=30"], "patch_size: must be a multiple of scale"),
        (["stage=srgan"], "init_from: the srgan stage starts from a trained sr_pixel run"),
        (["degrade_jpeg=99"], "degrade_jpeg"),
        (["colour_augment=2"], "colour_augment: must be a share in \\[0, 1\\], got 2"),
        (["data=sr_folder:"], "needs a path"),
        (["patch_sise=32"], "did you mean 'patch_size'"),
    ],
)
def test_bad_recipes_are_clear_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tiny(*overrides)


def test_srgan_from_a_model_of_another_scale_is_refused(tmp_path: Path) -> None:
    train_sr(tiny("scale=2"), tmp_path / "x2", dry_run=True)

    def stage2(init_from: Path, out: str) -> None:
        train_sr(tiny("scale=4", "stage=srgan", f"init_from={init_from}"), tmp_path / out, dry_run=True)

    with pytest.raises(ConfigError, match="is a x2 model, but this recipe has scale = 4"):
        stage2(tmp_path / "x2", "a")
    with pytest.raises(RunError, match="not found"):
        stage2(tmp_path / "nope", "b")
    (tmp_path / "junk.pt").write_text("not a generator")
    with pytest.raises(RunError, match="not a readable generator file"):
        stage2(tmp_path / "junk.pt", "c")
    for out in "abc":  # a refused run leaves no half-made run directory behind
        assert not (tmp_path / out).exists()


def test_cli_reports_tiny_images_and_bad_scale_with_exit_2(tmp_path: Path) -> None:
    root = tmp_path / "tiny"
    root.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(root / f"{i}.png")
    result = run_cli("--dry-run", "--out", str(tmp_path / "a"), "--set", f"data=sr_folder:{root}")
    assert result.returncode == 2
    assert "smaller than one training crop" in result.stderr or "at least 96 pixels" in result.stderr
    result = run_cli(
        "--dry-run", "--out", str(tmp_path / "b"), "--set", "data=sr_skimage", "--set", "scale=8"
    )
    assert result.returncode == 2 and "scale: must be one of 2, 4, got 8" in result.stderr
    assert "Traceback" not in result.stderr
