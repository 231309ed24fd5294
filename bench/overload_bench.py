"""Overload: bursts far past capacity on /generate and /upscale, from clients that ignore
Retry-After and from clients that wait it out, between two measures of the capacity; and a fleet
of gan-client jobs against one server. Goodput under a burst is a share of the capacity, also per
core that other processes on the machine left (bench.cores). The method, phase by phase, and
the figures it reports: bench/README.md (Overload). Loopback only; every phase is bounded in time.

    python bench/overload_bench.py                 # about 5 minutes; writes bench/results/overload.json
    python bench/overload_bench.py --endpoints generate --burst-clients 256 --modes aggressive
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cores import cores_left, cpu_reading  # noqa: E402
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
    thread_cpu,
    upscale_request,
)
from bench.overload_fleet import print_fleet, run_fleet  # noqa: E402
from bench.overload_report import CAPACITY_DRIFT, Phases, Target, as_ms, burst_report, print_run  # noqa: E402
from bench.server import ServerProcess, model_subset  # noqa: E402
from service.config import Settings  # noqa: E402

MODES = ("aggressive", "polite")
ENDPOINTS = ("generate", "upscale")
UPSCALER = "srresnet-x2"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoints", nargs="+", choices=ENDPOINTS, default=list(ENDPOINTS))
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--clients", type=int, default=0, help="capacity clients (default: 8 generate, 4 upscale)")
    p.add_argument("--baseline", type=float, default=6.0, help="seconds of the capacity phase (/generate)")
    p.add_argument(
        "--upscale-baseline",
        type=float,
        default=16.0,
        help="seconds of the capacity phase (/upscale: an image takes about a second, so counting "
        "whole images needs more of them)",
    )
    p.add_argument("--burst-clients", type=int, nargs="*", default=[256, 512], help="none: no bursts")
    p.add_argument("--burst", type=float, default=10.0, help="seconds per burst (/generate)")
    p.add_argument(
        "--upscale-burst", type=float, default=20.0, help="seconds per burst (/upscale: images are slow)"
    )
    p.add_argument("--recover", type=float, default=4.0, help="seconds of the recovery phase")
    p.add_argument("--n", type=int, default=16, help="images per capacity request (/generate)")
    p.add_argument("--burst-n", type=int, default=64, help="images per burst request (/generate)")
    p.add_argument("--image-size", type=int, default=256, help="side of the uploaded photo (/upscale)")
    p.add_argument("--fleet", type=int, default=16, help="gan-client jobs in the fleet (0: none)")
    p.add_argument("--fleet-images", type=int, default=768, help="images per fleet job")
    p.add_argument("--fleet-concurrency", type=int, default=16, help="each fleet job's --concurrency")
    p.add_argument(
        "--fleet-option", action="append", default=[], help="another gan-client option, e.g. --no-throttle"
    )
    p.add_argument("--max-queue-units", type=int, default=0, help="the generator's queue bound (0: default)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another server setting, e.g. refuse_early=false (GAN_SERVE_REFUSE_EARLY); repeatable",
    )
    p.add_argument(
        "--attempts",
        type=int,
        default=1,
        help="measure a burst again, up to this many times in all, while its capacity drifted by "
        f"over {CAPACITY_DRIFT - 1:.0%} between before and after it, or its goodput share is under "
        "--goodput-floor (a machine shared with other processes)",
    )
    p.add_argument("--goodput-floor", type=float, default=0.0, help="see --attempts")
    p.add_argument("--out", type=Path, default=ROOT / "bench/results/overload.json")
    return p.parse_args(argv)


def photo_png(size: int) -> bytes:
    """A real photograph (scikit-image's astronaut), size x size, as PNG."""
    import skimage.data
    from PIL import Image

    image = Image.fromarray(skimage.data.astronaut()).resize((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def setting(settings: dict[str, object], name: str) -> float:
    """A server setting this run sets (--set, --max-queue-units), else the service's default."""
    return float(str(settings.get(name, Settings.model_fields[name].default)))


def make_target(args: argparse.Namespace, endpoint: str, settings: dict[str, object]) -> Target:
    queue_s = setting(settings, "max_queue_ms") / 1000
    if endpoint == "generate":
        model = "digits"
        return Target(
            endpoint,
            model,
            Mix({"generate": generate_request({"model": model, "n": args.n, "seed": 0})}),
            args.n,
            Mix({"generate": generate_request({"model": model, "n": args.burst_n, "seed": 0})}),
            args.burst_n,
            int(setting(settings, "max_queue_units")),
            queue_s,
            args.clients or 8,
            args.baseline,
            args.burst,
        )
    upload = upscale_request(photo_png(args.image_size), UPSCALER)
    # A batch upscale job sends a deadline long enough for any queue it may meet.
    upload = upload.replace(b"\r\n\r\n", b"\r\nX-Deadline-Ms: 600000\r\n\r\n", 1)
    mix = Mix({"upscale": upload})
    tiles = int(setting(settings, "max_queue_tiles"))
    return Target(
        endpoint,
        UPSCALER,
        mix,
        1,
        mix,
        1,
        tiles,
        queue_s,
        args.clients or 4,
        args.upscale_baseline,
        args.upscale_burst,
    )


# --- one burst ----------------------------------------------------------------------------------


async def run_phases(
    args: argparse.Namespace, server: ServerProcess, target: Target, clients: int, polite: bool
) -> Phases:
    port, pid = server.port, server.process.pid
    readings = [cpu_reading(pid)]
    baseline = await closed_loop(port, target.capacity, target.clients, target.baseline_s, ids=True)
    server_cpu = thread_cpu(pid)
    client_cpu = time.process_time()
    readings.append(cpu_reading(pid))
    burst_start = readings[-1].at
    burst_end = burst_start + target.burst_s
    cpu: dict[str, float] = {}

    async def recovery() -> list[Outcome]:  # starts as the burst stops, while its last answers come
        await asyncio.sleep(max(0.0, burst_end - time.monotonic()))
        readings.append(cpu_reading(pid))
        cpu.update(cpu_split(pid, server_cpu), client=time.process_time() - client_cpu)
        return await closed_loop(port, target.capacity, target.clients, args.recover, ids=True)

    burst, after = await asyncio.gather(
        closed_loop(port, target.burst, clients, target.burst_s, honor_retry_after=polite, ids=True),
        recovery(),
    )
    # The capacity again, measured as before the burst: a machine whose other processes took or
    # gave back cores meanwhile shows here, and the goodput is a share of both.
    readings.append(cpu_reading(pid))
    baseline_after = await closed_loop(port, target.capacity, target.clients, target.baseline_s, ids=True)
    readings.append(cpu_reading(pid))
    left = {
        phase: cores_left(readings[i], readings[i + 1])
        for i, phase in ((0, "before"), (1, "burst"), (3, "after"))
    }
    return Phases(
        baseline,
        readings[0].at,
        burst,
        after,
        burst_start,
        burst_end,
        cpu,
        baseline_after,
        readings[3].at,
        left,
    )


def run_burst(
    args: argparse.Namespace, server: ServerProcess, target: Target, clients: int, mode: str
) -> dict[str, Any]:
    endpoint = f"/{target.endpoint}"
    refused_before = histogram(server.url, "gan_request_duration_seconds", endpoint=endpoint, model="")
    accepted_before = histogram(
        server.url, "gan_request_duration_seconds", endpoint=endpoint, model=target.model
    )
    queue_full_before = metric(server.url, "gan_rejections_total", reason="queue_full")
    at_door_before = metric(server.url, "gan_refused_at_door_total", endpoint=endpoint)
    units_before = metric(server.url, "gan_batch_size_units_sum", model=target.model)
    with RssSampler(server.process.pid, 0.05) as rss:
        start = time.monotonic()
        phases = _run(run_phases(args, server, target, clients, polite=mode == "polite"))
    before = rss.between(start, phases.burst_start)
    memory = {
        "before": round(max(before), 1),
        "peak": round(max(mb for _, mb in rss.samples), 1),
        "after": round(rss.samples[-1][1], 1),
    }
    memory["growth"] = round(memory["after"] - memory["before"], 1)
    refused = histogram(server.url, "gan_request_duration_seconds", endpoint=endpoint, model="")
    refused_in_burst = {le: count - refused_before.get(le, 0.0) for le, count in refused.items()}
    accepted = histogram(server.url, "gan_request_duration_seconds", endpoint=endpoint, model=target.model)
    accepted_in_run = {le: count - accepted_before.get(le, 0.0) for le, count in accepted.items()}
    images = sum(target.capacity_units for o in phases.baseline + phases.recovery if o.status == 200)
    images += sum(target.burst_units for o in phases.burst if o.status == 200)
    # work units (tiles, for an upscaler) per image, from the model's own counts
    units = metric(server.url, "gan_batch_size_units_sum", model=target.model) - units_before
    server_view = {
        "server_counted_queue_full": metric(server.url, "gan_rejections_total", reason="queue_full")
        - queue_full_before,
        # of them, answered by the door (in the HTTP protocol, before the application)
        "server_refused_at_door": metric(server.url, "gan_refused_at_door_total", endpoint=endpoint)
        - at_door_before,
        # Refusals (answers with no model) as the server timed them: bucket bounds, not exact.
        "server_refused_p50_ms_at_most": as_ms(histogram_quantile(refused_in_burst, 0.5)),
        "server_refused_p99_ms_at_most": as_ms(histogram_quantile(refused_in_burst, 0.99)),
        # Answered requests from their first byte read (their wait in a paused socket excluded),
        # over the three phases.
        "server_accepted_p99_ms_at_most": as_ms(histogram_quantile(accepted_in_run, 0.99)),
    }
    return burst_report(args, target, clients, mode, phases, server_view, memory, units / max(images, 1))


def measure_burst(
    args: argparse.Namespace, server: ServerProcess, target: Target, clients: int, mode: str
) -> dict[str, Any]:
    """run_burst, and again (up to --attempts in all) while the capacity drifted between before
    and after the burst or the goodput share is under --goodput-floor: on a machine shared with
    other processes, they can take the cores during any phase, and a server whose goodput is short
    is short in every attempt. The last attempt is the run; every attempt's figures are kept."""
    attempts: list[dict[str, Any]] = []
    while True:
        run = run_burst(args, server, target, clients, mode)
        print_run(run)
        share = run["burst"]["goodput_share_per_core_left"]
        attempts.append(
            {
                "capacity": run["capacity"],
                "goodput_share_of_capacity": run["burst"]["goodput_share_of_capacity"],
                "goodput_share_per_core_left": share,
            }
        )
        if len(attempts) >= args.attempts or (not run["capacity"]["drifted"] and share >= args.goodput_floor):
            return {**run, "attempts": attempts}
        print("measured again:", "the capacity drifted" if run["capacity"]["drifted"] else "goodput short")


def _run(coroutine: Any) -> Any:
    """Runs on uvloop when it is installed (the load generator then costs the shared cores less)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


# --- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    extra: dict[str, object] = dict(item.split("=", 1) for item in args.set)
    if args.max_queue_units:
        extra["max_queue_units"] = args.max_queue_units
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {platform.system()}, {len(os.sched_getaffinity(0))} cores",
        "settings": {k: str(v) for k, v in vars(args).items()},
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as scratch:
        for endpoint in args.endpoints:
            target = make_target(args, endpoint, extra)
            models = model_subset(Path(scratch), [target.model])
            # No access log: a line per request would cost the server CPU that the figures count.
            settings = {"log_level": "warning", **extra}
            server = ServerProcess.start(Path(scratch) / f"{endpoint}.log", settings, models=models)
            try:
                _run(closed_loop(server.port, target.capacity, target.clients, 1.0))  # warm-up
                for clients in args.burst_clients:
                    for mode in args.modes:
                        report["runs"].append(measure_burst(args, server, target, clients, mode))
                if endpoint == "generate" and args.fleet:
                    report["fleet"] = run_fleet(args, server, Path(scratch) / "fleet")
                    print_fleet(report["fleet"])
                report.setdefault("ready_after", {})[endpoint] = httpx.get(
                    f"{server.url}/readyz", timeout=10
                ).status_code
            finally:
                server.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
