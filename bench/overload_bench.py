"""Overload: bursts of many times the service's capacity, each followed by normal load again.

    python bench/overload_bench.py [--burst 10] [--burst-clients 512] [--out bench/results/overload.json]

One gan-serve process on the bundled digits model. For each burst mode (--modes), three phases,
each bounded in time:
  1. baseline: --clients closed-loop clients (n=--n per request) for --baseline s: the capacity;
  2. burst: --burst-clients closed-loop clients for --burst s. "aggressive" clients send again as
     soon as they are answered and ignore Retry-After (a misbehaving job); "polite" ones wait out
     Retry-After with jitter, as gan-client does;
  3. recovery: from the moment the burst stops, the baseline's clients again for --recover s.
It prints, and writes as JSON: how fast the refusals came (at the client, and in the server's own
latency histogram) and whether each carried Retry-After; the accepted requests' throughput and
p99 during the burst, beside the bound the queue implies; 5xx and failed connections; the
server's resident memory (before, peak, after); where the CPU went; and the recovery time, from
the end of the burst to the first 100 ms window with at least 90 % of the baseline's rate.
Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import (  # noqa: E402
    Mix,
    Outcome,
    RssSampler,
    closed_loop,
    cpu_split,
    generate_request,
    histogram,
    histogram_quantile,
    metric,
    percentile,
    thread_cpu,
    windows,
)
from bench.server import ServerProcess, model_subset  # noqa: E402

WINDOW_S = 0.1
MODES = ("aggressive", "polite")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="digits")
    p.add_argument("--n", type=int, default=16, help="images per request")
    p.add_argument("--clients", type=int, default=16, help="clients in the baseline and recovery phases")
    p.add_argument("--baseline", type=float, default=5.0, help="seconds")
    p.add_argument("--burst-clients", type=int, default=512)
    p.add_argument("--burst", type=float, default=10.0, help="seconds")
    p.add_argument("--recover", type=float, default=5.0, help="seconds")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--max-queue-units", type=int, default=1024, help="the server's GAN_SERVE_MAX_QUEUE_UNITS")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another server setting, e.g. inference_nice=0 (GAN_SERVE_INFERENCE_NICE); repeatable",
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench/results/overload.json")
    return p.parse_args(argv)


@dataclass
class Phases:
    baseline: list[Outcome]
    burst: list[Outcome]
    recovery: list[Outcome]
    burst_end: float  # when the burst stopped sending (time.monotonic())
    cpu: dict[str, float]  # CPU seconds during the burst: the server's threads, and this client


async def run_phases(args: argparse.Namespace, server: ServerProcess, mix: Mix, polite: bool) -> Phases:
    baseline = await closed_loop(server.port, mix, args.clients, args.baseline)
    server_cpu = thread_cpu(server.process.pid)
    client_cpu = time.process_time()
    burst_end = time.monotonic() + args.burst
    cpu: dict[str, float] = {}

    async def recovery() -> list[Outcome]:  # starts as the burst stops, while its last answers come
        await asyncio.sleep(max(0.0, burst_end - time.monotonic()))
        cpu.update(cpu_split(server.process.pid, server_cpu), client=time.process_time() - client_cpu)
        return await closed_loop(server.port, mix, args.clients, args.recover)

    burst, after = await asyncio.gather(
        closed_loop(server.port, mix, args.burst_clients, args.burst, honor_retry_after=polite), recovery()
    )
    return Phases(baseline, burst, after, burst_end, cpu)


def burst_report(
    args: argparse.Namespace, mode: str, phases: Phases, server: dict[str, Any], memory: dict[str, float]
) -> dict[str, Any]:
    ok_base = [o for o in phases.baseline if o.status == 200]
    capacity_rps = len(ok_base) / args.baseline
    accepted = [o for o in phases.burst if o.status == 200]
    refused = [o for o in phases.burst if o.status == 429]
    accepted_rps = len(accepted) / args.burst
    # What an accepted request waits for at most in the server: a full queue ahead of it, at the
    # rate the server kept up during the burst, and its own work (the client's own lag comes on top).
    full_queue_drain_s = (args.max_queue_units / args.n + 1) / max(accepted_rps, 1e-9)
    recovery_s = None
    good = windows(phases.recovery, phases.burst_end, WINDOW_S, lambda o: o.status == 200)
    for i, count in enumerate(good):
        if count >= 0.9 * capacity_rps * WINDOW_S:
            recovery_s = round((i + 1) * WINDOW_S, 1)
            break
    everything = phases.baseline + phases.burst + phases.recovery
    return {
        "mode": mode,
        "baseline": {
            "requests_per_s": round(capacity_rps, 1),
            "images_per_s": round(capacity_rps * args.n),
            "p50_ms": _ms(percentile([o.latency for o in ok_base], 50)),
            "p99_ms": _ms(percentile([o.latency for o in ok_base], 99)),
        },
        "burst": {
            "requests": len(phases.burst),
            "x_capacity_rate": round(len(phases.burst) / args.burst / max(capacity_rps, 1e-9), 1),
            "x_queue_in_flight": round(args.burst_clients * args.n / args.max_queue_units, 1),
            "accepted": len(accepted),
            "accepted_images_per_s": round(accepted_rps * args.n),
            "accepted_p50_ms": _ms(percentile([o.latency for o in accepted], 50)),
            "accepted_p99_ms": _ms(percentile([o.latency for o in accepted], 99)),
            "full_queue_drain_ms": _ms(full_queue_drain_s),
            "refused_429": len(refused),
            "refused_p50_ms": _ms(percentile([o.latency for o in refused], 50)),
            "refused_p99_ms": _ms(percentile([o.latency for o in refused], 99)),
            "refused_without_retry_after": sum(o.retry_after is None for o in refused),
            "other_statuses": sorted({o.status for o in phases.burst} - {200, 429}),
            **server,
        },
        "recovery": {
            "seconds_to_90pct_of_baseline": recovery_s,
            "requests_per_s": round(sum(o.status == 200 for o in phases.recovery) / args.recover, 1),
            "p99_ms": _ms(percentile([o.latency for o in phases.recovery if o.status == 200], 99)),
        },
        "errors": {
            "5xx": sum(o.status >= 500 for o in everything),
            "no_answer": sum(o.status == 0 for o in everything),
        },
        "memory_mb": memory,
        "cores_busy_during_burst": {k: round(v / args.burst, 2) for k, v in phases.cpu.items()},
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def run_mode(args: argparse.Namespace, server: ServerProcess, mix: Mix, mode: str) -> dict[str, Any]:
    refused_before = histogram(server.url, "gan_request_duration_seconds", endpoint="/generate", model="")
    queue_full_before = metric(server.url, "gan_rejections_total", reason="queue_full")
    with RssSampler(server.process.pid, 0.05) as rss:
        start = time.monotonic()
        phases = asyncio.run(run_phases(args, server, mix, polite=mode == "polite"))
    burst_start = phases.burst_end - args.burst
    before = rss.between(start, burst_start)
    memory = {
        "before": round(max(before), 1),
        "peak": round(max(mb for _, mb in rss.samples), 1),
        "after": round(rss.samples[-1][1], 1),
    }
    memory["growth"] = round(memory["after"] - memory["before"], 1)
    refused = histogram(server.url, "gan_request_duration_seconds", endpoint="/generate", model="")
    refused_in_burst = {le: count - refused_before.get(le, 0.0) for le, count in refused.items()}
    server_view = {
        "server_counted_queue_full": metric(server.url, "gan_rejections_total", reason="queue_full")
        - queue_full_before,
        # Refusals (answers with no model) as the server timed them: bucket bounds, not exact.
        "server_refused_p50_ms_at_most": _ms(histogram_quantile(refused_in_burst, 0.5)),
        "server_refused_p99_ms_at_most": _ms(histogram_quantile(refused_in_burst, 0.99)),
    }
    return burst_report(args, mode, phases, server_view, memory)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mix = Mix({"generate": generate_request({"model": args.model, "n": args.n, "seed": 0})})
    settings: dict[str, object] = dict(item.split("=", 1) for item in args.set)
    settings["max_queue_units"] = args.max_queue_units
    with tempfile.TemporaryDirectory() as scratch:
        models = model_subset(Path(scratch), [args.model])
        # No access log: a line per request would cost the server CPU that the figures count.
        settings = {"log_level": "warning", **settings}
        server = ServerProcess.start(Path(scratch) / "server.log", settings, models=models)
        try:
            runs = []
            for mode in args.modes:
                runs.append(run_mode(args, server, mix, mode))
                print_run(runs[-1])
            ready = httpx.get(f"{server.url}/readyz", timeout=10).status_code
        finally:
            server.stop()
    print(f"ready after the bursts: {ready}")
    report = {
        "machine": f"{platform.machine()}, {platform.system()}, {len(os.sched_getaffinity(0))} cores",
        "settings": {k: str(v) for k, v in vars(args).items()},
        "runs": runs,
        "ready_after": ready,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {args.out}")
    return 0


def print_run(r: dict[str, Any]) -> None:
    b, u, rec, mem, cpu = (
        r["baseline"],
        r["burst"],
        r["recovery"],
        r["memory_mb"],
        r["cores_busy_during_burst"],
    )
    print(f"--- {r['mode']} burst")
    print(
        f"baseline: {b['requests_per_s']} requests/s ({b['images_per_s']} images/s), "
        f"p50 {b['p50_ms']} ms, p99 {b['p99_ms']} ms"
    )
    print(
        f"burst: {u['requests']} requests, {u['x_capacity_rate']}x the baseline's request rate, "
        f"{u['x_queue_in_flight']}x the queue asked for at once"
    )
    print(
        f"  accepted {u['accepted']} ({u['accepted_images_per_s']} images/s): p50 {u['accepted_p50_ms']} ms, "
        f"p99 {u['accepted_p99_ms']} ms (a full queue drains in {u['full_queue_drain_ms']} ms at that rate)"
    )
    print(
        f"  refused 429: {u['refused_429']}: p50 {u['refused_p50_ms']} ms, p99 {u['refused_p99_ms']} ms "
        f"at the client; in the server p50 <= {u['server_refused_p50_ms_at_most']} ms, "
        f"p99 <= {u['server_refused_p99_ms_at_most']} ms"
    )
    print(
        f"  without Retry-After: {u['refused_without_retry_after']}; other statuses: {u['other_statuses']}; "
        f"5xx: {r['errors']['5xx']}; no answer: {r['errors']['no_answer']}"
    )
    print(
        f"recovery: {rec['seconds_to_90pct_of_baseline']} s to 90 % of the baseline's rate; "
        f"then {rec['requests_per_s']} requests/s, p99 {rec['p99_ms']} ms"
    )
    print(
        f"memory: {mem['before']} MiB before, peak {mem['peak']}, after {mem['after']} "
        f"({mem['growth']:+.1f}); cores busy in the burst: event loop {cpu['event_loop']}, "
        f"the server's other threads {cpu['other_threads']}, this load generator {cpu['client']}"
    )


if __name__ == "__main__":
    sys.exit(main())
