"""The figures of one overload run: what the phases' answers (Phases) come to against the load
an endpoint was given (Target): capacity, goodput as a share of it, latencies of the accepted and
the refused, errors, recovery; and how a run is printed. bench/overload_bench.py runs the phases.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from bench.loadgen import Mix, Outcome, percentile, windows

WINDOW_S = 0.1
SETTLE_S = 1.0  # goodput is counted from this long after the burst starts
# The capacity measured after the burst and before it differ by more than this factor: the
# machine changed under the run (another process took or gave back cores).
CAPACITY_DRIFT = 1.3


@dataclass
class Target:
    """One endpoint's load: what a capacity request and a burst request are, in work units."""

    endpoint: str
    model: str
    capacity: Mix
    capacity_units: int  # images per capacity request
    burst: Mix
    burst_units: int  # images per burst request
    queue_bound: int  # the model's queue bound, in its own units (images, or tiles)
    queue_s: float  # its bound in seconds of work (max_queue_ms; 0: none)
    clients: int
    baseline_s: float
    burst_s: float


@dataclass
class Phases:
    baseline: list[Outcome]
    baseline_start: float
    burst: list[Outcome]
    recovery: list[Outcome]
    burst_start: float
    burst_end: float  # when the burst stopped sending (time.monotonic())
    cpu: dict[str, float]  # CPU seconds during the burst: the server's threads, and this client
    baseline_after: list[Outcome]  # the capacity phase again, after the recovery
    baseline_after_start: float
    cores_left: dict[str, float]  # by the machine's other processes: before, burst, after


def units_done(outcomes: list[Outcome], units: int, start: float, end: float) -> float:
    """Images answered (200) between start and end, per second."""
    done = sum(units for o in outcomes if o.status == 200 and start <= o.sent + o.latency <= end)
    return done / max(end - start, 1e-9)


def capacity_of(target: Target, outcomes: list[Outcome], start: float) -> float:
    """Images/s of a capacity phase, counted as the burst's goodput is: from a settling time after
    it starts (SETTLE_S, or a quarter of a shorter phase) until it stops sending; the requests
    still running when it stops would otherwise count as done within it (+4 images in 6 s: a
    capacity 25 % too high for /upscale, whose images take over a second each)."""
    settled = start + min(SETTLE_S, target.baseline_s / 4)
    return units_done(outcomes, target.capacity_units, settled, start + target.baseline_s)


def burst_report(
    args: argparse.Namespace,
    target: Target,
    clients: int,
    mode: str,
    phases: Phases,
    server: dict[str, Any],
    memory: dict[str, float],
    units_per_image: float,
) -> dict[str, Any]:
    ok_base = [o for o in phases.baseline + phases.baseline_after if o.status == 200]
    before = capacity_of(target, phases.baseline, phases.baseline_start)
    after = capacity_of(target, phases.baseline_after, phases.baseline_after_start)
    capacity = (before + after) / 2
    # The same per core that the machine's other processes left (all of them on a quiet machine)
    left = phases.cores_left
    before_per_core, after_per_core = before / left["before"], after / left["after"]
    capacity_rps = capacity / target.capacity_units  # images/s, requests/s
    accepted = [o for o in phases.burst if o.status == 200]
    refused = [o for o in phases.burst if o.status == 429]
    goodput = units_done(phases.burst, target.burst_units, phases.burst_start + SETTLE_S, phases.burst_end)
    # A full queue, drained at capacity: what an accepted request may wait in the server.
    drain_s = target.queue_bound / max(capacity * units_per_image, 1e-9)
    if target.queue_s > 0:  # bounded in time too: the work ahead of a request, and the request
        drain_s = min(drain_s, target.queue_s + target.burst_units / max(capacity, 1e-9))
    recovery_s = None
    good = windows(phases.recovery, phases.burst_end, WINDOW_S, lambda o: o.status == 200)
    for i, count in enumerate(good):
        if count >= 0.9 * capacity_rps * WINDOW_S:
            recovery_s = round((i + 1) * WINDOW_S, 1)
            break
    everything = phases.baseline + phases.burst + phases.recovery + phases.baseline_after
    answered = [o for o in everything if o.status]
    return {
        "endpoint": target.endpoint,
        "mode": mode,
        "burst_clients": clients,
        "capacity": {
            "requests_per_s": round(capacity_rps, 2),
            "images_per_s": round(capacity, 2),  # the mean of before and after the burst
            "before_images_per_s": round(before, 2),
            "after_images_per_s": round(after, 2),
            "cores_left_before": round(left["before"], 2),
            "cores_left_after": round(left["after"], 2),
            "drifted": max(before_per_core, after_per_core)
            > CAPACITY_DRIFT * min(before_per_core, after_per_core),
            "p50_ms": as_ms(percentile([o.latency for o in ok_base], 50)),
            "p99_ms": as_ms(percentile([o.latency for o in ok_base], 99)),
            "refused_429": sum(o.status == 429 for o in phases.baseline + phases.baseline_after),
        },
        "burst": {
            "requests": len(phases.burst),
            "seconds": target.burst_s,
            "requests_per_s": round(len(phases.burst) / target.burst_s, 1),
            "goodput_images_per_s": round(goodput, 2),
            "goodput_share_of_capacity": round(goodput / max(capacity, 1e-9), 3),
            "cores_left": round(left["burst"], 2),
            "goodput_share_per_core_left": round(
                goodput / left["burst"] / max((before_per_core + after_per_core) / 2, 1e-9), 3
            ),
            "accepted": len(accepted),
            "accepted_p50_ms": as_ms(percentile([o.latency for o in accepted], 50)),
            "accepted_p99_ms": as_ms(percentile([o.latency for o in accepted], 99)),
            "full_queue_drain_ms": as_ms(drain_s),
            "refused_429": len(refused),
            "refused_p50_ms": as_ms(percentile([o.latency for o in refused], 50)),
            "refused_p99_ms": as_ms(percentile([o.latency for o in refused], 99)),
            "refused_without_retry_after": sum(o.retry_after is None for o in refused),
            "other_statuses": sorted({o.status for o in phases.burst} - {200, 429}),
            **server,
        },
        "recovery": {
            "seconds_to_90pct_of_capacity": recovery_s,
            "requests_per_s": round(sum(o.status == 200 for o in phases.recovery) / args.recover, 2),
            "p99_ms": as_ms(percentile([o.latency for o in phases.recovery if o.status == 200], 99)),
        },
        "errors": {
            "5xx": sum(o.status >= 500 for o in everything),
            "no_answer": sum(o.status == 0 for o in everything),
            "answer_for_another_request": sum(not o.matched for o in answered),
        },
        "memory_mb": memory,
        "cores_busy_during_burst": {k: round(v / target.burst_s, 2) for k, v in phases.cpu.items()},
    }


def as_ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def print_run(r: dict[str, Any]) -> None:
    c, u, rec, mem, cpu, err = (
        r["capacity"],
        r["burst"],
        r["recovery"],
        r["memory_mb"],
        r["cores_busy_during_burst"],
        r["errors"],
    )
    print(f"--- /{r['endpoint']}: {r['burst_clients']} {r['mode']} clients")
    print(
        f"capacity: {c['images_per_s']} images/s ({c['before_images_per_s']} before the burst, "
        f"{c['after_images_per_s']} after{', drifted' if c['drifted'] else ''}), p50 {c['p50_ms']} ms, "
        f"p99 {c['p99_ms']} ms, {c['refused_429']} refused"
    )
    print(
        f"burst: goodput {u['goodput_images_per_s']} images/s = {100 * u['goodput_share_of_capacity']:.0f} % "
        f"of capacity, {100 * u['goodput_share_per_core_left']:.0f} % per core left by other processes "
        f"({u['cores_left']} in the burst, {c['cores_left_before']} before, {c['cores_left_after']} after); "
        f"{u['requests_per_s']} requests/s"
    )
    print(
        f"  accepted {u['accepted']}: p50 {u['accepted_p50_ms']} ms, p99 {u['accepted_p99_ms']} ms "
        f"(in the server p99 <= {u['server_accepted_p99_ms_at_most']} ms; a full queue drains in "
        f"{u['full_queue_drain_ms']} ms at capacity)"
    )
    print(
        f"  refused {u['refused_429']}: p50 {u['refused_p50_ms']} ms, p99 {u['refused_p99_ms']} ms at the "
        f"client; in the server p99 <= {u['server_refused_p99_ms_at_most']} ms; without Retry-After: "
        f"{u['refused_without_retry_after']}; other statuses: {u['other_statuses']}"
    )
    print(
        f"errors: 5xx {err['5xx']}, no answer {err['no_answer']}, answers naming another request "
        f"{err['answer_for_another_request']}; recovery: {rec['seconds_to_90pct_of_capacity']} s to 90 % "
        f"of capacity"
    )
    print(
        f"memory: {mem['before']} MiB before, peak {mem['peak']}, after {mem['after']} "
        f"({mem['growth']:+.1f}); cores busy: event loop {cpu['event_loop']}, the server's other threads "
        f"{cpu['other_threads']}, this load generator {cpu['client']}"
    )
