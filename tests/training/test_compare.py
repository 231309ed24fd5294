"""`gan-train compare`: every loss with its own optimiser defaults, one table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.cli import main
from training.compare import markdown_table

REPO = Path(__file__).parents[2]


def test_compare_dry_run_writes_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "compare",
            str(REPO / "configs" / "ring8.toml"),
            "--losses",
            "minimax,wgan-gp",
            "--out",
            str(tmp_path),
            "--dry-run",
        ]
    )
    assert code == 0
    rows = json.loads((tmp_path / "comparison.json").read_text())
    assert [(r["recipe"], r["loss"]) for r in rows] == [("ring8", "minimax"), ("ring8", "wgan-gp")]
    # each loss ran with its published optimiser settings, not the recipe's
    saved = json.loads((tmp_path / "ring8-wgan-gp" / "config.json").read_text())
    assert (saved["d_steps"], saved["g_lr"], saved["beta1"], saved["beta2"]) == (5, 1e-4, 0.0, 0.9)
    table = (tmp_path / "comparison.md").read_text()
    assert table.startswith("| recipe | loss | modes |") and "| ring8 | wgan-gp |" in table
    assert table in capsys.readouterr().out


def test_compare_rejects_unknown_losses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(REPO / "configs" / "ring8.toml"), "--losses", "hinge,lsgan"]) == 2
    assert "--losses: lsgan not one of" in capsys.readouterr().err


def test_markdown_table_formats_both_kinds_of_rows() -> None:
    rows = [
        {
            "recipe": "ring8",
            "loss": "hinge",
            "modes": 8,
            "modes_total": 8,
            "hq_fraction": 0.9,
            "seconds": 61.2,
        },
        {
            "recipe": "digits",
            "loss": "hinge",
            "accuracy": 0.95,
            "fd": 1.5,
            "fd_real_baseline": 0.75,
            "precision": 0.7,
            "recall": 0.6,
            "seconds": 600,
        },
    ]
    lines = markdown_table(rows).splitlines()
    assert lines[2] == "| ring8 | hinge | 8/8 | 90.0% | - | - | - | 61 s |"
    assert lines[3] == "| digits | hinge | - | - | 95.0% | 1.50 (0.75) | 0.70 / 0.60 | 600 s |"


def test_compare_runs_the_style_recipe(tmp_path: Path) -> None:
    # every loss on the style G, wgan-gp's gradient penalty through its minibatch-stddev D too
    recipe = str(REPO / "configs" / "digits_style.toml")
    small = ["--set", "resolution=16", "--set", "classifier_epochs=1"]
    code = main(["compare", recipe, "--losses", "hinge,wgan-gp", "--out", str(tmp_path), "--dry-run", *small])
    assert code == 0
    rows = json.loads((tmp_path / "comparison.json").read_text())
    assert [(r["recipe"], r["loss"]) for r in rows] == [
        ("digits_style", "hinge"),
        ("digits_style", "wgan-gp"),
    ]
    assert all(0 <= r["accuracy"] <= 1 for r in rows)
    assert (tmp_path / "digits_style-wgan-gp" / "samples" / "mixing_latest.png").is_file()
