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


def units_done(outcomes: list[Outcome], units: int, start: float, end: float) -> float:
    """Images answered (200) between start and end, per second."""
    done = sum(units for o in outcomes if o.status == 200 and start <= o.sent + o.latency <= end)
    return done / max(end - start, 1e-9)


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
    ok_base = [o for o in phases.baseline if o.status == 200]
    # Counted as the burst's goodput is: the requests still running when the phase stops sending
    # would otherwise count as done within it (+4 images in 6 s: a capacity 25 % too high for
    # /upscale, whose images take over a second each).
    settled = phases.baseline_start + SETTLE_S
    capacity = units_done(
        phases.baseline, target.capacity_units, settled, settled + target.baseline_s - SETTLE_S
    )
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
    everything = phases.baseline + phases.burst + phases.recovery
    answered = [o for o in everything if o.status]
    return {
        "endpoint": target.endpoint,
        "mode": mode,
        "burst_clients": clients,
        "capacity": {
            "requests_per_s": round(capacity_rps, 2),
            "images_per_s": round(capacity, 2),
            "p50_ms": as_ms(percentile([o.latency for o in ok_base], 50)),
            "p99_ms": as_ms(percentile([o.latency for o in ok_base], 99)),
            "refused_429": sum(o.status == 429 for o in phases.baseline),
        },
        "burst": {
            "requests": len(phases.burst),
            "seconds": target.burst_s,
            "requests_per_s": round(len(phases.burst) / target.burst_s, 1),
            "goodput_images_per_s": round(goodput, 2),
            "goodput_share_of_capacity": round(goodput / max(capacity, 1e-9), 3),
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
        f"capacity: {c['images_per_s']} images/s, p50 {c['p50_ms']} ms, p99 {c['p99_ms']} ms, "
        f"{c['refused_429']} refused"
    )
    print(
        f"burst: goodput {u['goodput_images_per_s']} images/s = {100 * u['goodput_share_of_capacity']:.0f} % "
        f"of capacity; {u['requests_per_s']} requests/s"
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
