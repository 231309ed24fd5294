"""The fleet of gan-client jobs against one server (bench/overload_bench.py --fleet): the jobs all
at once, then the same jobs one after another; the time of each way and the share of the jobs'
requests the server refused (its own counts).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.loadgen import metric
from bench.server import ServerProcess

ROOT = Path(__file__).resolve().parents[1]


def run_fleet(args: argparse.Namespace, server: ServerProcess, scratch: Path) -> dict[str, Any]:
    """args.fleet gan-client generate jobs at once, then the same one after another."""

    def job(i: int, way: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "client.cli",
            "generate",
            "--url",
            server.url,
            "--model",
            "digits",
            "--n",
            str(args.fleet_images),
            "--seed",
            str(i * args.fleet_images),
            "--out",
            str(scratch / way / str(i)),
            "--concurrency",
            str(args.fleet_concurrency),
            "--no-progress",
            *args.fleet_option,
        ]

    report: dict[str, Any] = {"jobs": args.fleet, "images_per_job": args.fleet_images}
    for way in ("together", "one_after_another"):
        requests_before = metric(server.url, "gan_requests_total", endpoint="/generate")
        refused_before = metric(server.url, "gan_requests_total", endpoint="/generate", status="429")
        start = time.monotonic()
        if way == "together":
            running = [
                subprocess.Popen(job(i, way), cwd=ROOT, stdout=subprocess.DEVNULL) for i in range(args.fleet)
            ]
            codes = [p.wait(timeout=600) for p in running]
        else:
            codes = [
                subprocess.run(job(i, way), cwd=ROOT, stdout=subprocess.DEVNULL, timeout=600).returncode
                for i in range(args.fleet)
            ]
        seconds = time.monotonic() - start
        requests = metric(server.url, "gan_requests_total", endpoint="/generate") - requests_before
        refused = (
            metric(server.url, "gan_requests_total", endpoint="/generate", status="429") - refused_before
        )
        written = sum(1 for _ in (scratch / way).rglob("*.png"))
        report[way] = {
            "seconds": round(seconds, 2),
            "exit_codes": sorted(set(codes)),
            "images_written": written,
            "requests": int(requests),
            "refused": int(refused),
            "refused_share": round(refused / max(requests, 1), 4),
        }
    report["together_over_one_after_another"] = round(
        report["together"]["seconds"] / report["one_after_another"]["seconds"], 3
    )
    return report


def print_fleet(f: dict[str, Any]) -> None:
    print(f"--- fleet: {f['jobs']} gan-client generate jobs of {f['images_per_job']} images")
    for way in ("together", "one_after_another"):
        w = f[way]
        print(
            f"{way.replace('_', ' ')}: {w['seconds']} s, {w['images_written']} images written, "
            f"{w['requests']} requests, {w['refused']} refused ({100 * w['refused_share']:.1f} %), "
            f"exit codes {w['exit_codes']}"
        )
    print(f"together / one after another: {f['together_over_one_after_another']}")
