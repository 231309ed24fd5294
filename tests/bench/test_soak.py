"""The soak script, run for a few seconds at half the measured capacity: every kind of request in
the mix is sent and answered 200, and the figures it reports are there."""

from __future__ import annotations

import json
from pathlib import Path

from bench import soak


def test_a_short_soak_serves_the_whole_mix_without_errors(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    assert soak.main(["--duration", "4", "--calibrate", "1", "--load", "0.5", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["requests"] > 0 and report["errors"] == 0, report["statuses"]
    assert set(report["by_kind"]) == set(soak.mixed_load().requests)
    assert report["p99_ms"] is not None
    memory = report["memory_mb"]
    assert memory["after_warmup"] is not None and memory["peak"] >= memory["after_warmup"]
