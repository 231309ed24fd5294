"""Versions swapped 200 times while clients send requests (bench/swap_bench.py): no request fails,
no answer mixes versions, pinned requests are answered by the version they pin, and resident
memory stays flat (a leaked session would add over a MiB a swap)."""

from __future__ import annotations

from pathlib import Path

from bench import swap_bench


def test_200_swaps_under_load_lose_nothing_and_leak_nothing(tmp_path: Path) -> None:
    result = swap_bench.run(tmp_path, swaps=200, clients=4)
    assert result["statuses"] == {"200": result["requests"]} and result["requests"] > 200, result
    assert result["answers_by_version"] > 50, result  # the load really ran across the swaps
    assert result["mixed_answers"] == 0 and result["pinned_answered_by_another_version"] == 0, result
    assert result["versions_loaded_at_end"] == [1, 202], result
    assert result["rss_slope_kib_per_swap"] < 512, result
