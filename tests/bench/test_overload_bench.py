"""The overload benchmark, run short against a real server: a burst of 128 clients asking n=64
that ignore Retry-After, between two measures of the capacity. What must hold whatever the
machine's speed, and whatever else runs on it:
- goodput stays a large share of capacity, both per core that the machine's other processes left
  to the server and the load generator in that phase (a process that takes the cores during the
  burst alone does not count as the server's doing); measured again, up to 3 attempts, while the
  capacity per core drifted between before and after the burst or the goodput is short (work
  that stalls or starves under a burst is short in every attempt). 0.63 to 0.94 on the 2-core
  machine, quiet or shared with two busy loops; 0 with a queue that never stops shedding; about
  0.65 with neither the door nor the pauses, which the next check catches;
- the door answers most of the refusals (none with refuse_early off);
- every request gets exactly its own answer (ids checked 1:1), refusals are 429 with Retry-After,
  nothing is a 5xx, the server is ready after the burst, and memory stays bounded.
Timings are printed, never asserted."""

from __future__ import annotations

import json
from pathlib import Path

from bench import overload_bench

GOODPUT_FLOOR = 0.6


def test_goodput_holds_under_a_burst_and_every_request_gets_its_own_answer(tmp_path: Path) -> None:
    out = tmp_path / "overload.json"
    argv = ["--endpoints", "generate", "--modes", "aggressive", "--burst-clients", "128", "--fleet", "0"]
    argv += ["--baseline", "2", "--burst", "3.5", "--recover", "1", "--out", str(out)]
    argv += ["--attempts", "3", "--goodput-floor", str(GOODPUT_FLOOR)]
    assert overload_bench.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["ready_after"] == {"generate": 200}
    [run] = report["runs"]
    burst = run["burst"]
    assert run["errors"] == {"5xx": 0, "no_answer": 0, "answer_for_another_request": 0}, run
    assert burst["other_statuses"] == []
    assert burst["refused_429"] > 0 and burst["refused_without_retry_after"] == 0
    assert burst["server_counted_queue_full"] >= burst["refused_429"]
    assert burst["server_refused_at_door"] >= burst["refused_429"] / 2, burst
    assert burst["goodput_share_per_core_left"] >= GOODPUT_FLOOR, run["attempts"]
    assert run["recovery"]["requests_per_s"] > 0
    assert run["memory_mb"]["growth"] < 100
