"""The load generator's arithmetic: percentiles, histogram quantiles, the request mix, windows."""

from __future__ import annotations

from bench.loadgen import Mix, Outcome, histogram_quantile, percentile, windows


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None


def test_histogram_quantile_names_the_bucket_that_holds_it() -> None:
    buckets = {0.001: 10.0, 0.01: 90.0, 0.1: 99.0, float("inf"): 100.0}
    assert histogram_quantile(buckets, 0.05) == 0.001
    assert histogram_quantile(buckets, 0.5) == 0.01
    assert histogram_quantile(buckets, 0.99) == 0.1
    assert histogram_quantile(buckets, 1.0) == float("inf")
    assert histogram_quantile({0.1: 0.0, float("inf"): 0.0}, 0.5) is None


def test_the_mix_interleaves_kinds_by_weight() -> None:
    mix = Mix({"a": b"A", "b": b"B", "c": b"C"}, {"a": 3, "b": 2})
    assert mix.rotation() == ["a", "b", "c", "a", "b", "a"]


def test_windows_count_good_answers_by_completion_time() -> None:
    outcomes = [
        Outcome("x", sent=10.0, latency=0.05, status=200, retry_after=None),  # done at 10.05
        Outcome("x", sent=10.0, latency=0.15, status=200, retry_after=None),  # 10.15
        Outcome("x", sent=10.1, latency=0.09, status=429, retry_after=1.0),  # 10.19, not good
        Outcome("x", sent=10.2, latency=0.15, status=200, retry_after=None),  # 10.35
    ]
    assert list(windows(outcomes, 10.0, 0.1, lambda o: o.status == 200)) == [1, 1, 0, 1]
