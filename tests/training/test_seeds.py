"""`gan-train seeds`: a recipe's runs as mean ± sd."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.training.test_train import run_cli
from training.seeds import mean_sd, read_evaluations, summarize


def _run(root: Path, name: str, evaluation: dict[str, object]) -> Path:
    run = root / name
    run.mkdir()
    (run / "eval.json").write_text(json.dumps(evaluation))
    return run


def test_mean_and_sample_sd() -> None:
    assert mean_sd([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_sd([5.0]) == (5.0, 0.0)


def test_gan_runs_are_summarised_and_printed(tmp_path: Path) -> None:
    runs = [
        _run(tmp_path, f"s{i}", {"accuracy": a, "recall": r, "fd_ratio": 1.0, "per_class": {}, "source": "x"})
        for i, (a, r) in enumerate([(0.98, 0.80), (0.99, 0.84), (0.97, 0.82)])
    ]
    summary = summarize(read_evaluations(runs))
    assert list(summary) == ["accuracy", "fd_ratio", "recall"]  # the table's order; others ignored
    assert summary["accuracy"]["mean"] == pytest.approx(0.98) and summary["accuracy"]["sd"] == pytest.approx(
        0.01
    )
    assert summary["recall"]["values"] == [0.80, 0.84, 0.82]
    table = run_cli("seeds", *(str(r) for r in runs))
    assert table.returncode == 0, table.stderr
    assert "| accuracy | 0.98 ± 0.01 | 0.98 / 0.99 / 0.97 |" in table.stdout
    as_json = json.loads(run_cli("seeds", "--json", *(str(r) for r in runs)).stdout)
    assert as_json["fd_ratio"] == {"mean": 1.0, "sd": 0.0, "values": [1.0, 1.0, 1.0]}


def test_sr_runs_use_the_validation_and_test_figures(tmp_path: Path) -> None:
    runs = [
        _run(tmp_path, f"s{i}", {"test_psnr_gain_db": g, "validation_psnr_gain_db": g + 0.1})
        for i, g in enumerate([1.5, 1.7])
    ]
    summary = summarize(read_evaluations(runs))
    assert summary["test_psnr_gain_db"]["mean"] == pytest.approx(1.6)
    assert summary["validation_psnr_gain_db"]["mean"] == pytest.approx(1.7)


def test_a_run_without_an_evaluation_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "unfinished").mkdir()
    result = run_cli("seeds", str(tmp_path / "unfinished"))
    assert result.returncode == 2 and "no eval.json" in result.stderr
