"""The memory benchmark, run for a couple of seconds: its figures are there and consistent, the
mixed load is answered without errors, and each served model reports its memory."""

from __future__ import annotations

import json
from pathlib import Path

from bench import memory_bench


def test_a_short_memory_run_reports_idle_peak_and_every_model(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    argv = ["--seconds", "2", "--generate-clients", "1", "--upscale-clients", "1", "--side", "96"]
    assert memory_bench.main([*argv, "--out", str(out)]) == 0
    (result,) = json.loads(out.read_text())["results"]
    assert result["failed"] == {} and result["generated_images_per_s"] > 0
    assert 0 < result["idle_rss_mib"] <= result["load_peak_mib"]
    assert set(result["models_mib"]) == {
        "digits",
        "digits-conditional",
        "digits-style",
        "srgan-x4",
        "srresnet-x2",
        "srresnet-x4",
    }
    assert all(mib >= 0 for mib in result["models_mib"].values())
