"""Benchmark: the limit (in-process ONNX Runtime + encoding), a plain FastAPI endpoint, and this
service, on the same bundled models and the same scenarios. Prints a table and writes JSON.
Loopback only; every load run is bounded in time (wrk -d) and stops by itself.

    python bench/serve_bench.py [--duration 15] [--out bench/results/serve.json]
    git worktree add /tmp/before eb3993e
    python bench/serve_bench.py --only service --checkout /tmp/before --rounds 3 --out /tmp/ab.json

With --checkout the service of another checkout (its own code and bundled models, or with
--models one model repository for all) is measured too, side by side: every server is started
first, then each scenario is run against each server in turn, `--rounds` times in alternating
order, so drift in the machine's speed falls on all of them alike; the table gives the mean of
the rounds and the JSON every round.

Needs `wrk` on PATH (Debian: apt-get install wrk).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.server import ServerProcess  # noqa: E402
from model_repository.latents import latents_from_seeds  # noqa: E402
from model_repository.tiling import plan_tiles  # noqa: E402
from service.images.encoding import encode_image  # noqa: E402

GENERATOR = "digits-conditional"
UPSCALER = "srresnet-x4"
UPSCALE_SIDE = 512


@dataclass
class Scenario:
    name: str
    endpoint: str
    clients: int
    n: int  # images per request (1 for upscale)


SCENARIOS = [
    Scenario("n=1 x 64 clients", "generate", 64, 1),
    Scenario("n=16 x 8 clients", "generate", 8, 16),
    Scenario("n=1 x 1 client", "generate", 1, 1),
    Scenario(f"upscale {UPSCALE_SIDE}x{UPSCALE_SIDE} x4 x 4 clients", "upscale", 4, 1),
]


@dataclass
class Result:
    scenario: str
    system: str
    images_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    requests: int
    errors: int


# --- the limit: no HTTP ----------------------------------------------------------------------


def _session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # 0: ONNX Runtime's default (every core)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _side_by_side(lanes: int, seconds: float, work: Callable[[int], int]) -> float:
    """Units/s of `lanes` threads each calling work(start) -> units done, for `seconds`."""
    done = [0] * lanes
    stop = time.perf_counter() + seconds

    def lane(i: int) -> None:
        while time.perf_counter() < stop:
            done[i] += work(done[i])

    started = time.perf_counter()
    threads = [threading.Thread(target=lane, args=(i,)) for i in range(lanes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - started)


# The in-process layouts the limit is the best of: one run at a time on ONNX Runtime's own thread
# pool (every core), or one single-threaded run per core side by side (what the service does).
def layouts() -> list[tuple[int, int, str]]:
    cores = os.cpu_count() or 1
    return [(1, 0, "1 run x all cores"), (cores, 1, f"{cores} runs x 1 thread")]


def generator_limit(seconds: float) -> tuple[float, str]:
    """Best images/s over layouts and batch sizes: latents + ORT + PNG encoding of every image."""
    best = (0.0, "")
    for lanes, threads, layout in layouts():
        sess = _session(ROOT / "models" / GENERATOR / "1" / "model.onnx", threads)
        for batch in (8, 16, 32, 64):

            def work(start: int, sess: ort.InferenceSession = sess, batch: int = batch) -> int:
                z = latents_from_seeds(list(range(start, start + batch)), 64)
                images = sess.run(None, {"z": z, "labels": np.arange(batch, dtype=np.int64) % 10})[0]
                for image in images:
                    encode_image(image, "png")
                return batch

            rate = _side_by_side(lanes, seconds, work)
            best = max(best, (rate, f"{layout}, batch {batch}"))
    return best


def upscaler_limit(seconds: float, tile: int) -> tuple[float, str]:
    """Best tiles/s of the upscaler at the service's tile shape over layouts and tiles per batch
    (inference only)."""
    best = (0.0, "")
    for lanes, threads, layout in layouts():
        sess = _session(ROOT / "models" / UPSCALER / "1" / "model.onnx", threads)
        for tiles in (1, 4):
            batch = np.random.default_rng(0).integers(0, 256, (tiles, tile, tile, 3), dtype=np.uint8)
            sess.run(None, {"image": batch})

            def work(start: int, sess: ort.InferenceSession = sess, batch: np.ndarray = batch) -> int:
                sess.run(None, {"image": batch})
                return len(batch)

            best = max(best, (_side_by_side(lanes, seconds, work), f"{layout}, {tiles} tile(s) a batch"))
    return best


# --- servers ---------------------------------------------------------------------------------


def run_wrk(
    url: str, clients: int, seconds: float, body: Path, content_type: str, deadline_ms: int = 0
) -> dict[str, Any]:
    env = {
        **os.environ,
        "BENCH_BODY_FILE": str(body),
        "BENCH_CONTENT_TYPE": content_type,
        "BENCH_DEADLINE_MS": str(deadline_ms) if deadline_ms else "",
    }
    command = [
        "wrk",
        "-t1",
        f"-c{clients}",
        f"-d{int(seconds)}s",
        "--timeout",
        "60s",
        "-s",
        str(ROOT / "bench/wrk/post.lua"),
        url,
    ]
    out = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=seconds + 120, check=True
    ).stdout
    match = re.search(r"BENCH_JSON (\{.*\})", out)
    if not match:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    return dict(json.loads(match.group(1)))


def measure(system: str, port: int, scenario: Scenario, seconds: float, bodies: dict[str, Path]) -> Result:
    if scenario.endpoint == "generate":
        body = bodies[f"generate-{scenario.n}-{'plain' if system == 'plain' else 'service'}"]
        url, content_type = f"http://127.0.0.1:{port}/generate", "application/json"
    else:
        body = bodies["upscale"]
        url, content_type = f"http://127.0.0.1:{port}/upscale?model={UPSCALER}", "image/png"
    # A batch upscale job waits its turn: it sends a deadline long enough for the whole queue.
    deadline_ms = 600_000 if scenario.endpoint == "upscale" else 0
    stats = run_wrk(url, scenario.clients, seconds, body, content_type, deadline_ms)
    ok = stats["requests"] - stats["non2xx"]
    return Result(
        scenario=scenario.name,
        system=system,
        images_per_s=ok * scenario.n / (stats["duration_us"] / 1e6),
        p50_ms=stats["p50_us"] / 1000,
        p99_ms=stats["p99_us"] / 1000,
        requests=stats["requests"],
        errors=stats["non2xx"] + stats["socket_errors"],
    )


def write_bodies(directory: Path) -> dict[str, Path]:
    bodies: dict[str, Path] = {}
    for n in (1, 16):
        # The same work for both servers: n images of one class from consecutive seeds.
        service_body = {"model": GENERATOR, "n": n, "seed": 1, "labels": 3}
        plain_body = {"n": n, "seed": 1, "labels": 3}
        for system, payload in (("service", service_body), ("plain", plain_body)):
            path = directory / f"generate-{n}-{system}.json"
            path.write_text(json.dumps(payload))
            bodies[f"generate-{n}-{system}"] = path
    import skimage.data  # the bench runs in the dev environment

    photo = Image.fromarray(skimage.data.astronaut()).resize((UPSCALE_SIDE, UPSCALE_SIDE))
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    bodies["upscale"] = directory / "upscale.png"
    bodies["upscale"].write_bytes(buffer.getvalue())
    return bodies


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=15.0, help="seconds per wrk run")
    p.add_argument("--out", type=Path, default=ROOT / "bench/results/serve.json")
    p.add_argument(
        "--only", choices=["plain", "service"], help="run just the plain endpoint, or the services"
    )
    p.add_argument(
        "--checkout", type=Path, action="append", default=[], help="another checkout's service to compare"
    )
    p.add_argument("--rounds", type=int, default=1, help="runs of every scenario against every server")
    p.add_argument(
        "--models",
        type=Path,
        help="the model repository every service serves (default: each checkout its own bundled models), "
        "so that versions of the code are compared on the same model files",
    )
    args = p.parse_args()
    if shutil.which("wrk") is None:
        print("serve_bench: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2

    results: list[Result] = []
    rate, how = generator_limit(3.0)
    tile = 128
    tiles_per_s, tiles_how = upscaler_limit(10.0, tile)
    plan = plan_tiles(UPSCALE_SIDE, UPSCALE_SIDE, tile, 32)
    tiles_per_image = len(plan.origins)
    for scenario in SCENARIOS[:3]:
        results.append(Result(scenario.name, f"limit ({how})", rate, None, None, 0, 0))
    results.append(
        Result(SCENARIOS[3].name, f"limit ({tiles_how})", tiles_per_s / tiles_per_image, None, None, 0, 0)
    )
    print(f"limits: {rate:.0f} images/s ({how}); {tiles_per_s:.2f} tiles/s ({tiles_how})", flush=True)

    with tempfile.TemporaryDirectory() as scratch:
        bodies = write_bodies(Path(scratch))
        systems: dict[str, dict[str, Any]] = {}
        if args.only != "service":
            systems["plain"] = {
                "command": [
                    sys.executable,
                    "bench/plain_server.py",
                    "--generator",
                    f"models/{GENERATOR}/1/model.onnx",
                    "--upscaler",
                    f"models/{UPSCALER}/1/model.onnx",
                ],
                "ready_path": "/docs",
            }
        if args.only != "plain":
            for checkout in args.checkout:  # gan-serve of another checkout, its default settings
                systems[f"service@{checkout.name}"] = {
                    "models": args.models or checkout / "models",
                    "cwd": checkout,
                }
            systems["service"] = {"models": args.models or ROOT / "models"}  # this checkout's
        servers: dict[str, ServerProcess] = {}
        runs: dict[tuple[str, str], list[Result]] = {}
        try:
            for system, how in systems.items():
                servers[system] = ServerProcess.start(Path(scratch) / f"{system}.log", **how)
            for round_ in range(args.rounds):
                order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
                for scenario in SCENARIOS:
                    for system in order:
                        seconds = args.duration * (2 if scenario.endpoint == "upscale" else 1)
                        result = measure(system, servers[system].port, scenario, seconds, bodies)
                        runs.setdefault((scenario.name, system), []).append(result)
                        print(asdict(result), flush=True)
        finally:
            for server in servers.values():
                server.stop()
        results += [mean_of(rounds) for rounds in runs.values()]

    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "onnxruntime": ort.__version__,
                },
                "duration_s": args.duration,
                "rounds": args.rounds,
                "tiles_per_image": tiles_per_image,
                "results": [asdict(r) for r in results],
                "every_round": [asdict(r) for rounds in runs.values() for r in rounds],
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")
    return 0


def mean_of(rounds: list[Result]) -> Result:
    """One scenario on one server: the mean of its rounds (errors and requests summed)."""

    def mean(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return sum(known) / len(known) if known else None

    first = rounds[0]
    return Result(
        scenario=first.scenario,
        system=first.system,
        images_per_s=sum(r.images_per_s for r in rounds) / len(rounds),
        p50_ms=mean([r.p50_ms for r in rounds]),
        p99_ms=mean([r.p99_ms for r in rounds]),
        requests=sum(r.requests for r in rounds),
        errors=sum(r.errors for r in rounds),
    )


def print_table(results: list[Result]) -> None:
    print(f"\n{'scenario':<36} {'system':<40} {'images/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}")
    for r in results:
        p50 = f"{r.p50_ms:.2f}" if r.p50_ms is not None else "-"
        p99 = f"{r.p99_ms:.2f}" if r.p99_ms is not None else "-"
        rate = f"{r.images_per_s:.1f}" if r.images_per_s >= 10 else f"{r.images_per_s:.3f}"
        print(f"{r.scenario:<36} {r.system:<40} {rate:>10} {p50:>9} {p99:>9} {r.errors:>7}")
    print_targets(results)


def print_targets(results: list[Result]) -> None:
    """The issue's targets, each with the measured ratio."""
    by = {(r.scenario, r.system.split(" ")[0]): r for r in results}
    names = [s.name for s in SCENARIOS]

    def ratio(scenario: str, a: str, b: str) -> float | None:
        x, y = by.get((scenario, a)), by.get((scenario, b))
        return x.images_per_s / y.images_per_s if x and y and y.images_per_s else None

    checks = [
        ("(a) n=1 x 64: service / plain >= 2", ratio(names[0], "service", "plain"), 2.0),
        ("(a) n=1 x 64: service / limit >= 0.65", ratio(names[0], "service", "limit"), 0.65),
        ("(b) n=16 x 8: service / limit >= 0.90", ratio(names[1], "service", "limit"), 0.90),
        ("(d) upscale: service / limit >= 0.85", ratio(names[3], "service", "limit"), 0.85),
    ]
    print()
    for text, value, target in checks:
        if value is not None:
            print(f"{text:<42} {value:6.2f}  {'met' if value >= target else 'NOT met'}")
    service, plain = by.get((names[0], "service")), by.get((names[0], "plain"))
    if service and plain and service.p99_ms is not None and plain.p99_ms is not None:
        met = "met" if service.p99_ms < plain.p99_ms else "NOT met"
        print(f"{'(a) n=1 x 64: p99 below plain':<42} {service.p99_ms:.1f} vs {plain.p99_ms:.1f} ms  {met}")
    service, plain = by.get((names[2], "service")), by.get((names[2], "plain"))
    if service and plain and service.p50_ms is not None and plain.p50_ms is not None:
        met = "met" if service.p50_ms - plain.p50_ms <= 1.0 else "NOT met"
        label = "(c) one client: p50 within 1 ms of plain"
        print(f"{label:<42} {service.p50_ms:.2f} vs {plain.p50_ms:.2f} ms  {met}")


if __name__ == "__main__":
    sys.exit(main())
