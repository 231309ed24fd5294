"""The overload benchmark, run short against a real server: both burst modes with a small queue,
so that most of the burst is refused. What must hold whatever the machine's speed: refusals are
429 with Retry-After, nothing is a 5xx or a dropped connection, accepted work still completes, the
server serves and is ready after the bursts, and memory stays bounded. The timings are printed,
never asserted."""

from __future__ import annotations

import json
from pathlib import Path

from bench import overload_bench


def test_bursts_are_refused_cleanly_and_the_server_recovers(tmp_path: Path) -> None:
    out = tmp_path / "overload.json"
    argv = ["--baseline", "1", "--burst", "2", "--recover", "2", "--burst-clients", "96"]
    assert overload_bench.main([*argv, "--max-queue-units", "64", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["ready_after"] == 200
    assert [run["mode"] for run in report["runs"]] == ["aggressive", "polite"]
    for run in report["runs"]:
        burst = run["burst"]
        assert run["errors"] == {"5xx": 0, "no_answer": 0}, run
        assert burst["other_statuses"] == []
        assert burst["refused_429"] > 0 and burst["refused_without_retry_after"] == 0
        assert burst["server_counted_queue_full"] >= burst["refused_429"]
        assert burst["accepted"] > 0
        assert run["recovery"]["requests_per_s"] > 0
        assert run["memory_mb"]["growth"] < 100
