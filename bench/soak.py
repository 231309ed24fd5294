"""Soak: a steady mixed load at a fraction of capacity for a bounded time; memory and errors.

    python bench/soak.py [--duration 180] [--load 0.7] [--out bench/results/soak.json]

One gan-serve process on three bundled models (digits, digits-conditional, srresnet-x2). The mix:
single images and batches of 16 from digits, labelled batches of 4 from digits-conditional, x2
upscales of a 48x48 PNG and of a 40x40 JPEG, and model listings. --calibrate s of closed-loop
load (--clients) measure the mix's capacity (mix_capacity); requests then arrive at a steady
--load x that rate (open loop: latency counts from when a request was due) for --duration s
(with --attempts, again while refused on a machine that turned busier). It prints, and writes as
JSON: requests, errors by status, p50/p99 per 10 s window and overall, and the resident memory
(sampled every second): after warm-up, at the end, the peak, and the trend over the second half
in MiB per minute. Loopback only; it stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import (  # noqa: E402
    Mix,
    Outcome,
    RssSampler,
    closed_loop,
    generate_request,
    open_loop,
    percentile,
    upscale_request,
)
from bench.server import ServerProcess, model_subset  # noqa: E402

MODELS = ["digits", "digits-conditional", "srresnet-x2"]
WINDOW_S = 10.0
# A soak refused at a rate over this share of the capacity measured right after it met a machine
# busier than its calibration did: it is measured again (--attempts).
DISTURBED_SHARE = 0.75


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=180.0, help="seconds of steady load")
    p.add_argument("--load", type=float, default=0.7, help="fraction of the measured capacity")
    p.add_argument("--calibrate", type=float, default=5.0, help="seconds of closed-loop load first")
    p.add_argument("--clients", type=int, default=16, help="closed-loop clients while calibrating")
    p.add_argument(
        "--attempts",
        type=int,
        default=1,
        help="calibrate and soak again, up to this many times, while a soak is refused and its rate "
        f"was over {DISTURBED_SHARE:.0%} of the capacity measured right after it (a shared machine)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench/results/soak.json")
    return p.parse_args(argv)


def image_bytes(size: int, fmt: str) -> bytes:
    rng = np.random.default_rng(size)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def mixed_load() -> Mix:
    requests = {
        "generate n=1": generate_request({"model": "digits", "n": 1, "seed": 1}),
        "generate n=16": generate_request({"model": "digits", "n": 16, "seed": 2}),
        "labelled n=4": generate_request(
            {"model": "digits-conditional", "n": 4, "seed": 3, "labels": [0, 3, 5, 9], "format": "webp"}
        ),
        "upscale png": upscale_request(image_bytes(48, "PNG"), "srresnet-x2"),
        "upscale jpeg": upscale_request(image_bytes(40, "JPEG"), "srresnet-x2", "image/jpeg"),
        "models": b"GET /v1/models HTTP/1.1\r\nHost: bench\r\n\r\n",
    }
    weights = {"generate n=1": 6, "generate n=16": 2, "labelled n=4": 3, "upscale png": 1, "upscale jpeg": 1}
    return Mix(requests, weights)


def mix_capacity(outcomes: list[Outcome], mix: Mix, clients: int) -> float:
    """Requests/s that `clients` closed-loop clients get the mix answered at (200), by Little's
    law: each waits on one request at a time, so one round of the rotation takes a client the sum
    of its kinds' mean latencies. Not the answers counted in the time: in a short closed loop, the
    requests of a slow kind (an upscaler starved of CPU by other processes takes seconds) are
    still waiting when the time is up, so the count is mostly the fast kinds', and an open loop at
    half of it can be more than the slow kind's queue takes."""
    latencies: dict[str, list[float]] = {kind: [] for kind in mix.requests}
    for o in outcomes:
        if o.status == 200:
            latencies[o.kind].append(o.latency)
    unanswered = sorted(kind for kind, seen in latencies.items() if not seen)
    if unanswered:
        raise RuntimeError(f"calibration: no answer (200) for {unanswered}")
    rotation = mix.rotation()
    round_s = sum(statistics.fmean(latencies[kind]) for kind in rotation)
    return clients * len(rotation) / round_s


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (time, MiB) samples, per minute."""
    if len(samples) < 3:
        return None
    t = np.array([s[0] for s in samples])
    mb = np.array([s[1] for s in samples])
    return float(np.polyfit(t - t[0], mb, 1)[0] * 60)


def summarize(
    args: argparse.Namespace,
    capacity_rps: float,
    rate: float,
    outcomes: list[Outcome],
    start: float,
    rss: RssSampler,
) -> dict[str, Any]:
    ok = [o.latency for o in outcomes if o.status == 200]
    statuses = Counter(o.status for o in outcomes)
    per_window = []
    for i in range(int(args.duration // WINDOW_S)):
        inside = [o for o in outcomes if start + i * WINDOW_S <= o.sent < start + (i + 1) * WINDOW_S]
        latencies = [o.latency for o in inside if o.status == 200]
        per_window.append(
            {
                "from_s": i * WINDOW_S,
                "requests": len(inside),
                "errors": sum(o.status != 200 for o in inside),
                "p99_ms": _ms(percentile(latencies, 99)),
                "rss_mb": round(
                    max(rss.between(start + i * WINDOW_S, start + (i + 1) * WINDOW_S) or [0.0]), 1
                ),
            }
        )
    end = start + args.duration
    warm = rss.between(start, start + min(WINDOW_S, args.duration))
    second_half = [(t, mb) for t, mb in rss.samples if start + args.duration / 2 <= t <= end]
    trend = slope_mb_per_min(second_half)
    return {
        "machine": f"{platform.machine()}, {platform.system()}, {len(os.sched_getaffinity(0))} cores",
        "settings": {k: str(v) for k, v in vars(args).items()},
        "capacity_requests_per_s": round(capacity_rps, 1),
        "rate_requests_per_s": round(rate, 1),
        "requests": len(outcomes),
        "by_kind": dict(Counter(o.kind for o in outcomes)),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": sum(v for k, v in statuses.items() if k != 200),
        "error_rate": round(sum(v for k, v in statuses.items() if k != 200) / max(len(outcomes), 1), 6),
        "p50_ms": _ms(percentile(ok, 50)),
        "p99_ms": _ms(percentile(ok, 99)),
        "windows": per_window,
        "memory_mb": {
            "after_warmup": round(max(warm), 1) if warm else None,
            "end": round(rss.samples[-1][1], 1) if rss.samples else None,
            "peak": round(max(mb for _, mb in rss.samples), 1) if rss.samples else None,
            "trend_second_half_mb_per_min": None if trend is None else round(trend, 3),
        },
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


@dataclass
class Attempt:
    """One calibration and soak; capacity_after is measured only when the soak was refused."""

    capacity_rps: float
    rate: float
    outcomes: list[Outcome]
    start: float
    rss: RssSampler
    capacity_after_rps: float | None = None

    def disturbed(self) -> bool:
        """Refused while the machine had less room than the calibration said: the soak's rate was
        over DISTURBED_SHARE of the capacity measured right after it (another process took the
        cores meanwhile), so a 429 was the server's right answer."""
        after = self.capacity_after_rps
        return after is not None and self.rate > DISTURBED_SHARE * after


def soak_once(args: argparse.Namespace, server: ServerProcess, mix: Mix, last: bool) -> Attempt:
    calibration = asyncio.run(closed_loop(server.port, mix, args.clients, args.calibrate))
    capacity_rps = mix_capacity(calibration, mix, args.clients)
    rate = args.load * capacity_rps
    print(
        f"capacity on the mix: {capacity_rps:.1f} requests/s; "
        f"soaking at {rate:.1f}/s for {args.duration:.0f} s"
    )
    with RssSampler(server.process.pid, 1.0) as rss:
        start = time.monotonic()
        outcomes = asyncio.run(open_loop(server.port, mix, rate, args.duration))
    attempt = Attempt(capacity_rps, rate, outcomes, start, rss)
    if not last and any(o.status == 429 for o in outcomes):
        after = asyncio.run(closed_loop(server.port, mix, args.clients, args.calibrate))
        attempt.capacity_after_rps = mix_capacity(after, mix, args.clients)
        print(f"refused; capacity on the mix right after: {attempt.capacity_after_rps:.1f} requests/s")
    return attempt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mix = mixed_load()
    attempts: list[Attempt] = []
    with tempfile.TemporaryDirectory() as scratch:
        models = model_subset(Path(scratch), MODELS)
        # No access log: a line per request would cost the server CPU that the figures count.
        server = ServerProcess.start(Path(scratch) / "server.log", {"log_level": "warning"}, models=models)
        try:
            while not attempts or (attempts[-1].disturbed() and len(attempts) < args.attempts):
                attempts.append(soak_once(args, server, mix, last=len(attempts) + 1 == args.attempts))
        finally:
            server.stop()
    last = attempts[-1]
    report = summarize(args, last.capacity_rps, last.rate, last.outcomes, last.start, last.rss)
    report["attempts"] = [
        {
            "capacity_requests_per_s": round(a.capacity_rps, 1),
            "rate_requests_per_s": round(a.rate, 1),
            "refused_429": sum(o.status == 429 for o in a.outcomes),
            "capacity_after_requests_per_s": None
            if a.capacity_after_rps is None
            else round(a.capacity_after_rps, 1),
        }
        for a in attempts
    ]
    print_report(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {args.out}")
    return 0


def print_report(r: dict[str, Any]) -> None:
    for w in r["windows"]:
        print(
            f"  {w['from_s']:5.0f} s: {w['requests']} requests, {w['errors']} errors, p99 {w['p99_ms']} ms, "
            f"RSS {w['rss_mb']} MiB"
        )
    mem = r["memory_mb"]
    print(
        f"requests: {r['requests']} at {r['rate_requests_per_s']}/s; errors: {r['errors']} "
        f"(rate {r['error_rate']}; statuses {r['statuses']}); p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms"
    )
    print(
        f"memory: {mem['after_warmup']} MiB after warm-up, {mem['end']} at the end, peak {mem['peak']}; "
        f"trend over the second half: {mem['trend_second_half_mb_per_min']} MiB/min"
    )


if __name__ == "__main__":
    sys.exit(main())
