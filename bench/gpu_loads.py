"""bench/gpu_bench.py's loads: closed-loop clients on keep-alive connections (shared among load
generator processes where one event loop would be the limit), each load stopped by itself (its
seconds, then a grace for the requests still out), and one server section (start, record the
providers, run the loads, stop)."""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import multiprocessing.connection
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from bench.gpu_plan import (
    CUDA,
    GENERATOR,
    LOADS,
    PHOTO_SIDE,
    PHOTOS,
    SERVICE_KEYS,
    UPSCALE_DEADLINE_MS,
    UPSCALER,
    Load,
    Plan,
    Report,
    say,
)
from bench.loadgen import Connection, generate_request, percentile, upscale_request
from bench.server import ServerProcess

# --- loads -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Done:
    sent: float
    done: float
    status: int  # 0: no answer


@dataclass
class LoadRun:
    outcomes: list[Done]
    start: float
    measure_from: float
    stop: float
    cut_off: int
    cpu_s: float  # CPU time of the load generator's process during the load


def load_process(
    port: int,
    requests: list[bytes],
    clients: int,
    plan: Plan,
    grace_s: float,
    pipe: multiprocessing.connection.Connection,
) -> None:
    """One of several load generator processes: says it is ready, waits for the common start."""
    pipe.send("ready")
    start_at = pipe.recv()
    time.sleep(max(0.0, start_at - time.monotonic()))  # CLOCK_MONOTONIC: the same in every process
    pipe.send(asyncio.run(closed_loop(port, requests, clients, plan, grace_s)))


def generate_load(
    port: int, requests: list[bytes], clients: int, plan: Plan, grace_s: float, processes: int
) -> LoadRun:
    """The clients in this process, or shared among `processes` load generator processes (one
    Python event loop is one core: at a GPU's request rates it can be the limit)."""
    if processes <= 1:
        return asyncio.run(closed_loop(port, requests, clients, plan, grace_s))
    context = multiprocessing.get_context("spawn")  # not fork: this process holds ORT's threads
    pipes = []
    for i in range(processes):
        share = clients // processes + (i < clients % processes)
        ours, theirs = context.Pipe()
        args = (port, requests, share, plan, grace_s, theirs)
        context.Process(target=load_process, args=args, daemon=True).start()
        pipes.append(ours)
    for pipe in pipes:
        try:
            ready = pipe.poll(60) and pipe.recv() == "ready"
        except EOFError:  # it ended first (its error is on stderr)
            ready = False
        if not ready:
            raise RuntimeError("a load generator process was not ready within 60 s")
    start_at = time.monotonic() + 0.05
    for pipe in pipes:
        pipe.send(start_at)
    runs: list[LoadRun] = []
    for pipe in pipes:
        if not pipe.poll(max(1.0, start_at - time.monotonic()) + plan.warmup_s + plan.seconds + grace_s + 30):
            raise RuntimeError("a load generator process did not report")
        runs.append(pipe.recv())
    return LoadRun(
        outcomes=[o for run in runs for o in run.outcomes],
        start=min(run.start for run in runs),
        measure_from=max(run.measure_from for run in runs),
        stop=max(run.stop for run in runs),
        cut_off=sum(run.cut_off for run in runs),
        cpu_s=sum(run.cpu_s for run in runs),
    )


async def closed_loop(port: int, requests: list[bytes], clients: int, plan: Plan, grace_s: float) -> LoadRun:
    """`clients` keep-alive connections, each sending its next request as soon as the last is
    answered, until the warm-up and the measured seconds have passed; a request still out a grace
    later is cut off."""
    start = time.monotonic()
    measure_from = start + plan.warmup_s
    stop = measure_from + plan.seconds
    hard_stop = stop + grace_s
    outcomes: list[Done] = []
    cut_off = 0
    cpu = time.process_time()

    async def client(offset: int) -> None:
        nonlocal cut_off
        connection = Connection(port)
        i = offset
        while time.monotonic() < stop:
            sent = time.monotonic()
            try:
                answer = await asyncio.wait_for(
                    connection.request(requests[i % len(requests)]), hard_stop - sent
                )
                status = answer.status
            except TimeoutError:
                cut_off += 1
                break
            except (OSError, ValueError, IndexError):
                status = 0
            outcomes.append(Done(sent, time.monotonic(), status))
            if status == 0:
                await asyncio.sleep(0.05)  # a server gone: no busy loop
            i += 1
        connection.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    return LoadRun(outcomes, start, measure_from, stop, cut_off, time.process_time() - cpu)


def figures(run: LoadRun, load: Load, clients: int, processes: int) -> dict[str, Any]:
    """Throughput over the answers completed from the warm-up's end to the last one (the requests
    out at the stop are waited for), latency of the successful ones among them."""
    counted = [o for o in run.outcomes if o.done >= run.measure_from]
    ok = [o for o in counted if o.status == 200]
    end = max([run.stop, *(o.done for o in counted)])
    window = end - run.measure_from
    latencies = [o.done - o.sent for o in ok]

    def ms(q: float) -> float | None:
        value = percentile(latencies, q)
        return None if value is None else round(value * 1000, 2)

    return {
        "endpoint": load.endpoint,
        "n": load.n,
        "clients": clients,
        "window_s": round(window, 2),
        "requests": len(counted),
        "ok": len(ok),
        "images_per_s": round(len(ok) * load.n / window, 3),
        "requests_per_s": round(len(ok) / window, 3),
        "p50_ms": ms(50),
        "p90_ms": ms(90),
        "p99_ms": ms(99),
        "errors": dict(Counter(str(o.status) for o in counted if o.status != 200)),
        "cut_off": run.cut_off,
        "loadgen_processes": processes,
        # Cores the load generator used: near its processes, it was the limit.
        "loadgen_cores": round(run.cpu_s / (end - run.start), 2),
    }


def photos(count: int) -> list[bytes]:
    """Test photos, resized (shorter side) and centre-cropped to PHOTO_SIDE square, as PNG."""
    bodies = []
    for path in sorted(PHOTOS.glob("*.png"))[:count]:
        image = Image.open(path).convert("RGB")
        scale = PHOTO_SIDE / min(image.size)
        w, h = round(image.width * scale), round(image.height * scale)
        image = image.resize((w, h), Image.Resampling.LANCZOS)
        left, top = (w - PHOTO_SIDE) // 2, (h - PHOTO_SIDE) // 2
        buffer = io.BytesIO()
        image.crop((left, top, left + PHOTO_SIDE, top + PHOTO_SIDE)).save(buffer, format="PNG")
        bodies.append(buffer.getvalue())
    if not bodies:
        raise RuntimeError(f"no photos in {PHOTOS}")
    return bodies


def requests_for(load: Load, system: str, images: list[bytes]) -> list[bytes]:
    if load.endpoint == "upscale":
        deadline = f"\r\nX-Deadline-Ms: {UPSCALE_DEADLINE_MS}\r\n\r\n".encode()
        return [upscale_request(image, UPSCALER).replace(b"\r\n\r\n", deadline, 1) for image in images]
    body: dict[str, object] = {"n": load.n, "seed": 1, "labels": 3}  # the same work for both servers
    if system == "service":
        body["model"] = GENERATOR
    return [generate_request(body)]


def run_loads(report: Report, plan: Plan, system: str, server: ServerProcess, images: list[bytes]) -> None:
    loads: dict[str, Any] = report.data[system]["loads"]
    for load in LOADS:
        report.enter(f"{system}: {load.name}")
        clients = load.quick_clients if plan.quick else load.clients
        spare = report.left() - plan.warmup_s - plan.seconds
        if spare < 0:
            loads[load.name] = {"skipped": f"the run's budget ({plan.budget_s:.0f} s) is spent"}
            say(report, f"{system} {load.name}: skipped, the run's budget is spent")
            continue
        grace = min(plan.grace_s, max(1.0, spare))
        processes = max(1, min(plan.loadgen_processes, clients // 4))
        try:
            run = generate_load(
                server.port, requests_for(load, system, images), clients, plan, grace, processes
            )
        except Exception as exc:  # the load generator failed: the next load still runs
            loads[load.name] = {"error": f"{type(exc).__name__}: {exc}"}
            report.data["errors"][f"{system} {load.name}"] = loads[load.name]["error"]
            say(report, f"{system} {load.name}: failed, {loads[load.name]['error']}")
            continue
        loads[load.name] = figures(run, load, clients, processes)
        f = loads[load.name]
        say(
            report,
            f"{system} {load.name} ({clients} clients): {f['images_per_s']:,.2f} images/s, "
            f"p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms, errors {f['errors'] or 0}, "
            f"cut off {f['cut_off']}, load generator {f['loadgen_cores']} cores in {processes} process(es)",
        )


def log_lines(server: ServerProcess, lines: int = 40) -> list[str]:
    """The server's log without its access log: start-up (the provider it chose, and why), warnings."""
    return [line for line in server.log().splitlines() if " gan.access " not in line][:lines]


def server_section(
    report: Report,
    plan: Plan,
    system: str,
    how: dict[str, Any],
    env: dict[str, str],
    scratch: Path,
    servers: list[ServerProcess],
    images: list[bytes],
) -> None:
    """Start one server (plain or service; `how`: ServerProcess.start's arguments), record the
    provider each of its models runs on, run the loads against it, stop it, keep its log's
    start-up lines; a failure is recorded and the run goes on."""
    report.enter(f"{system}: starting")
    say(report, f"{system}: starting")
    try:
        timeout = max(5.0, min(plan.start_timeout_s, report.left()))
        server = ServerProcess.start(scratch / f"{system}.log", env=env, timeout=timeout, **how)
        servers.append(server)
        if system == "plain":
            report.data["plain"]["providers"] = httpx.get(f"{server.url}/providers", timeout=10).json()
            providers = report.data["plain"]["providers"]
        else:
            listed = httpx.get(f"{server.url}/v1/models", timeout=10).json()["models"]
            report.data["service"]["models"] = {
                m["name"]: {"version": m["version"], **{k: m[k] for k in SERVICE_KEYS if k in m}}
                for m in listed
            }
            providers = {name: m["provider"] for name, m in report.data["service"]["models"].items()}
            report.data["service"]["readyz"] = httpx.get(f"{server.url}/readyz", timeout=10).json()
        say(report, f"{system}: ready, " + ", ".join(f"{k} on {v}" for k, v in providers.items()))
        if plan.provider == "cuda" and (on_cpu := sorted(k for k, v in providers.items() if v != CUDA)):
            report.data["errors"][f"{system} provider"] = (
                f"CUDA was asked for but {', '.join(on_cpu)} run on {providers[on_cpu[0]]} (measured anyway)"
            )
            say(report, f"{system}: {report.data['errors'][f'{system} provider']}")
        run_loads(report, plan, system, server, images)
    except Exception as exc:
        report.data["errors"][system] = f"{type(exc).__name__}: {exc}"[:4000]
        say(report, f"{system}: failed, {report.data['errors'][system][:500]}")
    finally:
        for server in servers:
            server.stop()
            report.data[system]["log"] = log_lines(server)
        servers.clear()
