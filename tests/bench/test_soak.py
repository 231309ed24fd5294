"""The soak script, run for a few seconds at half the measured capacity: every kind of request in
the mix is sent and answered 200, and the figures it reports are there. The capacity is measured
on the machine as it is (mix_capacity counts the slow upscales at their share, however much other
processes slow them); a soak refused while the machine turned busier than its calibration said is
measured again (up to 3 attempts): a 429 is then the server's right answer. A server that refuses
half its capacity does so in every attempt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import soak
from bench.loadgen import Mix, Outcome, RssSampler


def test_a_short_soak_serves_the_whole_mix_without_errors(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    argv = ["--duration", "4", "--calibrate", "1", "--load", "0.5", "--attempts", "3", "--out", str(out)]
    assert soak.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["requests"] > 0 and report["errors"] == 0, (report["statuses"], report["attempts"])
    assert set(report["by_kind"]) == set(soak.mixed_load().requests)
    assert report["p99_ms"] is not None
    memory = report["memory_mb"]
    assert memory["after_warmup"] is not None and memory["peak"] >= memory["after_warmup"]


def test_the_mix_capacity_counts_a_slow_kind_at_its_share() -> None:
    # Two clients, a rotation of one fast and one slow kind: each client's round takes
    # 0.01 + 0.99 s, so they are answered 2 x 2 requests a second, whatever the answers counted in
    # a short time (mostly fast ones) say.
    mix = Mix({"fast": b"", "slow": b""})
    outcomes = [Outcome("fast", 0.0, 0.01, 200, None)] * 50 + [Outcome("slow", 0.0, 0.99, 200, None)] * 2
    assert soak.mix_capacity(outcomes, mix, clients=2) == pytest.approx(4.0)


def test_a_refused_soak_is_measured_again_only_when_the_machine_turned_busier() -> None:
    def attempt(capacity_after: float | None) -> soak.Attempt:
        return soak.Attempt(100.0, 50.0, [], 0.0, RssSampler(0, 1.0), capacity_after)

    assert attempt(60.0).disturbed()  # 50/s is 83 % of what the server took right after
    assert not attempt(100.0).disturbed()  # half of it: the refusals were the server's
    assert not attempt(None).disturbed()  # not refused
