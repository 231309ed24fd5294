"""The lanes' niceness beside other work: throughput and p99 of /generate and /upscale alone and
with CPU-bound processes beside the server (a training run, a build), for each niceness of the
inference threads (GAN_SERVE_INFERENCE_NICE), and how much work those processes got done.

    python bench/nice_bench.py                       # about 3.5 minutes; writes bench/results/nice.json
    python bench/nice_bench.py --nice 19 0 --seconds 5

Per niceness, one gan-serve process (digits-conditional for /generate, srresnet-x2 for /upscale)
and, per endpoint: `--clients` closed-loop clients for --seconds alone, then the same with one
busy loop per core beside the server (normal priority, not pinned: the scheduler places them as
it would a training run's threads). The busy loops' iterations per second are reported as a share
of what they do beside an idle server: the other work's side of the trade.

Loopback only; every phase is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import Mix, closed_loop, generate_request, percentile, upscale_request  # noqa: E402
from bench.server import ServerProcess, model_subset  # noqa: E402

GENERATOR, UPSCALER = "digits-conditional", "srresnet-x2"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nice", type=int, nargs="+", default=[19, 10, 5, 0], help="lane niceness values")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each measured phase")
    p.add_argument("--clients", type=int, default=8, help="closed-loop clients (/upscale: half)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "nice.json")
    return p.parse_args(argv)


def _spin(counter: Synchronized) -> None:
    while True:
        for _ in range(100_000):
            pass
        with counter.get_lock():
            counter.value += 1


@contextmanager
def busy_loops(count: int) -> Iterator[Synchronized]:
    """`count` busy processes at normal priority; the value counts their chunks of iterations."""
    counter: Synchronized = multiprocessing.Value("q", 0)
    procs = [multiprocessing.Process(target=_spin, args=(counter,), daemon=True) for _ in range(count)]
    for proc in procs:
        proc.start()
    try:
        yield counter
    finally:
        for proc in procs:
            proc.kill()
            proc.join()


def photo_png(side: int) -> bytes:
    pixels = (np.random.default_rng(0).random((side, side, 3)) * 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def load(port: int, mix: Mix, clients: int, seconds: float, units: int) -> dict[str, Any]:
    outcomes = asyncio.run(closed_loop(port, mix, clients, seconds))
    ok = [o.latency for o in outcomes if o.status == 200]
    return {
        "per_s": round(len(ok) * units / seconds, 1),
        "p50_ms": round(1000 * (percentile(ok, 50) or 0), 1),
        "p99_ms": round(1000 * (percentile(ok, 99) or 0), 1),
        "refused": dict(Counter(str(o.status) for o in outcomes if o.status != 200)),  # by status
    }


def measure(nice: int, args: argparse.Namespace, scratch: Path, idle_rate: float) -> dict[str, Any]:
    settings = {"log_level": "warning", "inference_nice": nice}
    models = model_subset(scratch, [GENERATOR, UPSCALER])
    server = ServerProcess.start(scratch / f"nice-{nice}.log", settings, models=models)
    cores = len(os.sched_getaffinity(0))
    targets = {
        "generate": (
            Mix({"g": generate_request({"model": GENERATOR, "n": 16, "seed": 1})}),
            args.clients,
            16,
        ),
        "upscale": (Mix({"u": upscale_request(photo_png(256), UPSCALER)}), max(1, args.clients // 2), 1),
    }
    result: dict[str, Any] = {"nice": nice}
    try:
        for endpoint, (mix, clients, units) in targets.items():
            load(server.port, mix, clients, 1.0, units)  # warm-up
            alone = load(server.port, mix, clients, args.seconds, units)
            with busy_loops(cores) as counter:
                time.sleep(0.5)
                before, started = counter.value, time.monotonic()
                beside = load(server.port, mix, clients, args.seconds, units)
                rate = (counter.value - before) / (time.monotonic() - started)  # the phase ends late
                beside["other_work_share"] = round(rate / idle_rate, 3)
            result[endpoint] = {"alone": alone, "beside": beside}
            print(f"nice {nice:>2} {endpoint:>8}: alone {alone}  beside {beside}", flush=True)
    finally:
        server.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    with busy_loops(cores) as counter:  # the other work's rate on a machine to itself
        time.sleep(0.5)
        before = counter.value
        time.sleep(args.seconds / 2)
        idle_rate = (counter.value - before) / (args.seconds / 2)
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {platform.system()}, {cores} cores",
        "settings": {k: str(v) for k, v in vars(args).items()},
        "busy_loops_alone_per_s": round(idle_rate, 1),
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as scratch:
        for nice in args.nice:
            report["runs"].append(measure(nice, args, Path(scratch), idle_rate))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"written: {args.out}")
    return 0


def print_table(report: dict[str, Any]) -> None:
    print("| nice | endpoint | alone: per s, p99 | beside: per s, p99 | other work's share |")
    print("|---|---|---|---|---|")
    for run in report["runs"]:
        for endpoint in ("generate", "upscale"):
            a, b = run[endpoint]["alone"], run[endpoint]["beside"]
            share = 100 * b["other_work_share"]
            print(
                f"| {run['nice']} | /{endpoint} | {a['per_s']}, {a['p99_ms']} ms "
                f"| {b['per_s']}, {b['p99_ms']} ms | {share:.0f} % |"
            )


if __name__ == "__main__":
    sys.exit(main())
