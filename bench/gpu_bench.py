"""One run that measures the GPU path, in three sections, and writes one JSON file: (1) raw ONNX
Runtime throughput of every bundled model at batch sizes 1 to 256, fp32 and, where the manifest
lists one (`variants.fp16.file.name`), fp16: images (tiles for upscalers, at the service's tile
size) per second, median and p90 of a run, the provider each session really ran on; this is the
limit the service is measured against; (2) a plain FastAPI endpoint (bench/plain_server.py, one
ONNX Runtime run per request) and (3) the service (`python -m service`, started by
bench/server.py), each under the same closed-loop loads (n=1 x 256 clients, n=64 x 16 clients,
x4 upscales of 512x512 photos x 16 clients; every load stops by itself: its seconds, then at most
a grace for the requests still out). The file is written after every section and on SIGTERM or
SIGINT (`"partial": true` and the section that was running), so a run killed at a time limit
still leaves valid JSON. Loopback only. From the repository root:

    PYTHONPATH=. python bench/gpu_bench.py      # CUDA: bench/results/gpu.json, planned 3.5 min, budget 5
    PYTHONPATH=. python bench/gpu_bench.py --provider cpu --quick --out /tmp/gpu-rehearsal.json
    PYTHONPATH=. python bench/gpu_bench.py --models srgan-x4,digits --sections raw --out /tmp/raw.json

The rehearsal (--quick: batch sizes up to 2, one model of each kind, 1 s loads, few clients) takes
about 25 s on two CPU cores. With --provider cuda the CUDA and cuDNN libraries come from the
nvidia-* pip packages (onnxruntime.preload_dlls, here and in both servers); the servers inherit
this environment, PYTHONPATH with the repository first. Every figure says which provider produced
it, and --budget (300 s) bounds the whole run: a load that would end past it is skipped, so said.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import multiprocessing
import multiprocessing.connection
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import Connection, generate_request, percentile, upscale_request  # noqa: E402
from bench.server import ServerProcess, model_subset  # noqa: E402
from model_repository.tiling import plan_tiles  # noqa: E402

MODELS = sorted(p.name for p in (ROOT / "models").iterdir() if (p / "1" / "manifest.json").is_file())
GENERATOR = "digits-conditional"  # the loads' models, served by both servers
UPSCALER = "srresnet-x4"
QUICK_MODELS = [GENERATOR, "digits-style", UPSCALER]  # one of each kind: generate, style, upscale
BATCHES = [2**i for i in range(9)]  # 1 .. 256
QUICK_BATCHES = [1, 2]
PHOTO_SIDE = 512
PHOTOS = ROOT / "training" / "sr" / "photos" / "test"
UPSCALE_DEADLINE_MS = 600_000  # an upscale job waits its turn (as serve_bench.py's)
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# What the service says of each model version at GET /v1/models, besides its manifest: where and how
# it runs (the keys this service version has).
SERVICE_KEYS = (
    *("provider", "provider_fallback", "graph", "graph_precision", "precision", "io_binding"),
    *("batch_buckets", "concurrent_batches", "intra_op_threads", "load_seconds", "warm_up_seconds"),
    "memory_bytes",
)
DTYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(uint8)": np.uint8,
    "tensor(int64)": np.int64,
}


@dataclass(frozen=True)
class Load:
    name: str
    endpoint: str  # generate | upscale
    n: int  # images per request
    clients: int
    quick_clients: int


LOADS = [
    Load("generate n=1 x 256 clients", "generate", 1, 256, 8),
    Load("generate n=64 x 16 clients", "generate", 64, 16, 2),
    Load(f"upscale {PHOTO_SIDE}x{PHOTO_SIDE} x4 x 16 clients", "upscale", 1, 16, 1),
]


@dataclass(frozen=True)
class Plan:
    """What one run measures and its bounds, from the command line."""

    provider: str  # cuda | cpu
    quick: bool
    models: list[str]
    sections: list[str]
    batches: list[int]
    raw_seconds: float  # timed runs per batch size, at least min_runs
    min_runs: int
    warmup_runs: int  # untimed runs at each new batch size
    max_run_s: float  # a batch size whose run takes longer ends the model's sizes (the time bound)
    max_io_mb: float  # ... and one whose inputs and outputs would exceed this (the memory bound)
    raw_budget_s: float  # the raw section's time, shared among its models and precisions
    seconds: float  # measured per load
    warmup_s: float  # before each load's measured window
    grace_s: float  # requests still out after a load's seconds get this long, then are cut off
    start_timeout_s: float
    budget_s: float  # the whole run: a load that would end past it is skipped (recorded so)
    loadgen_processes: int  # a load's clients shared among this many processes (at least 4 each)


class Interrupted(BaseException):
    """SIGTERM or SIGINT: unwinds past the sections' error handling, like KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class Report:
    """The JSON file, rewritten whole (atomically) after every section and on a signal."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    deadline: float = float("inf")  # when the run's budget is spent (time.monotonic)
    writes: int = 0

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def write(self) -> None:
        self.data["elapsed_s"] = round(time.monotonic() - self.started, 2)
        self.writes += 1
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{self.writes}.tmp")
        try:
            tmp.write_text(json.dumps(self.data, indent=2, default=str) + "\n")
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)

    def enter(self, section: str) -> None:
        self.data["section"] = section
        self.write()


def say(report: Report, message: str) -> None:
    print(f"[{time.monotonic() - report.started:6.1f} s] {message}", flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--provider", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu.json")
    p.add_argument(
        "--quick",
        action="store_true",
        help="the rehearsal: batch sizes up to 2, one model of each kind, 1 s loads, few clients",
    )
    p.add_argument("--seconds", type=float, help="measured seconds per load (default 10; --quick 1)")
    p.add_argument("--raw-seconds", type=float, help="timed runs per batch size (default 0.5 s; --quick 0.1)")
    p.add_argument(
        "--budget",
        type=float,
        help="seconds for the whole run (default 300; --quick 120): loads past it are skipped",
    )
    p.add_argument(
        "--loadgen-processes",
        type=int,
        help="load generator processes for a load with 8 or more clients (default: a quarter of the "
        "cores, at most 4; --quick 2, so that the rehearsal runs that path too)",
    )
    p.add_argument("--models", help=f"comma-separated, of {', '.join(MODELS)} (default all; --quick three)")
    p.add_argument(
        "--sections",
        default="raw,plain,service",
        help="comma-separated, of raw, plain, service (default all)",
    )
    args = p.parse_args(argv)
    models = args.models.split(",") if args.models else (QUICK_MODELS if args.quick else MODELS)
    if unknown := [m for m in models if m not in MODELS]:
        p.error(f"--models: {', '.join(unknown)} not among {', '.join(MODELS)}")
    sections = args.sections.split(",")
    if unknown := [s for s in sections if s not in ("raw", "plain", "service")]:
        p.error(f"--sections: {', '.join(unknown)} not among raw, plain, service")
    args.plan = Plan(
        provider=args.provider,
        quick=args.quick,
        models=models,
        sections=sections,
        batches=QUICK_BATCHES if args.quick else BATCHES,
        raw_seconds=args.raw_seconds or (0.1 if args.quick else 0.5),
        min_runs=2 if args.quick else 3,
        warmup_runs=1 if args.quick else 2,
        max_run_s=2.0,
        max_io_mb=4096,
        raw_budget_s=(4.0 if args.quick else 20.0) * len(models),
        seconds=args.seconds or (1.0 if args.quick else 10.0),
        warmup_s=0.3 if args.quick else 1.0,
        grace_s=10.0 if args.quick else 30.0,
        start_timeout_s=60.0 if args.quick else 120.0,
        budget_s=args.budget or (120.0 if args.quick else 300.0),
        loadgen_processes=args.loadgen_processes
        or (2 if args.quick else max(1, min(4, (os.cpu_count() or 1) // 4))),
    )
    return args


# --- the machine and the software ------------------------------------------------------------


def run_text(command: list[str]) -> str | None:
    """A command's stdout, or None where it is missing or fails."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    memory = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
    gpus = run_text(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
    header = run_text(["nvidia-smi"])
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", header or "")
    return {
        "cpu_model": model.group(1) if model else platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "memory_gib": round(int(memory.group(1)) / 2**20, 1) if memory else None,
        "platform": platform.platform(),
        "gpus": gpus.splitlines() if gpus else None,  # nvidia-smi's name, driver_version, memory.total
        "driver_cuda_version": cuda.group(1) if cuda else None,
    }


def versions() -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    nvidia = {
        d.metadata["Name"]: d.version
        for d in metadata.distributions()
        if (d.metadata["Name"] or "").lower().startswith("nvidia-")
    }
    return {
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "onnxruntime_packages": {
            "onnxruntime": version("onnxruntime"),
            "onnxruntime-gpu": version("onnxruntime-gpu"),
        },
        "onnxruntime_imported_from": str(Path(ort.__file__).parent),
        "onnxruntime_build_info": ort.get_build_info() if hasattr(ort, "get_build_info") else None,
        "onnxruntime_cuda_version": getattr(ort, "cuda_version", None) or None,  # what it was built for
        "onnxruntime_available_providers": ort.get_available_providers(),
        "nvidia_packages": dict(sorted(nvidia.items())),  # the CUDA and cuDNN libraries (pip)
        "numpy": np.__version__,
        "fastapi": version("fastapi"),
        "uvicorn": version("uvicorn"),
    }


def providers_for(provider: str) -> list[Any]:
    if provider == "cpu":
        return [CPU]
    return [(CUDA, {"cudnn_conv_algo_search": "HEURISTIC"}), CPU]


# --- raw ONNX Runtime ------------------------------------------------------------------------


def manifest_of(model: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "models" / model / "1" / "manifest.json").read_text()))


def kind_of(manifest: dict[str, Any]) -> str:
    if manifest["task"] == "upscale":
        return "upscale"
    return "style" if "style" in manifest.get("generator", {}) else "generate"


def graphs_of(model: str, manifest: dict[str, Any]) -> dict[str, Path | str]:
    """fp32 and fp16: the graph's path, or why there is none to measure."""
    directory = ROOT / "models" / model / "1"
    graphs: dict[str, Path | str] = {"fp32": directory / manifest["file"]["name"]}
    fp16 = manifest.get("variants", {}).get("fp16", {}).get("file", {}).get("name")
    if not fp16:
        graphs["fp16"] = "no fp16 graph"
    elif not (directory / fp16).is_file():
        graphs["fp16"] = f"the manifest lists {fp16}, which is missing"
    else:
        graphs["fp16"] = directory / fp16
    return graphs


def feed_for(
    session: ort.InferenceSession, batch: int, tile: int | None, classes: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Inputs of the declared shapes and types (a symbolic height or width: the tile)."""
    feed: dict[str, np.ndarray] = {}
    for spec in session.get_inputs():
        dims = [d if isinstance(d, int) else tile for d in spec.shape[1:]]
        if any(d is None for d in dims):
            raise ValueError(f"input {spec.name} {spec.shape}: a symbolic size and no tile")
        shape = (batch, *(int(d) for d in dims if d is not None))
        dtype = DTYPES[spec.type]
        if dtype is np.uint8:
            feed[spec.name] = rng.integers(0, 256, shape, dtype=np.uint8)
        elif dtype is np.int64:
            feed[spec.name] = rng.integers(0, classes, shape, dtype=np.int64)
        else:
            feed[spec.name] = rng.standard_normal(shape).astype(dtype)
    return feed


def run_once(session: ort.InferenceSession, feed: dict[str, np.ndarray]) -> tuple[float, int]:
    """Seconds of one run (inputs from host memory, outputs back to it, as the service runs) and
    the bytes of its outputs."""
    started = time.perf_counter()
    outputs = session.run(None, feed)
    return time.perf_counter() - started, sum(np.asarray(o).nbytes for o in outputs)


def measure_graph(
    report: Report,
    plan: Plan,
    label: str,
    path: Path,
    manifest: dict[str, Any],
    budget_s: float,
    reserve_s: float,
) -> dict[str, Any]:
    """One graph at growing batch sizes until the sizes end or a bound is met: a run slower than
    max_run_s, inputs and outputs over max_io_mb, ONNX Runtime out of memory, or its time
    (budget_s, and the run's budget less reserve_s, the servers' planned time) spent."""
    tile = manifest.get("upscaler", {}).get("tile")
    classes = int(manifest.get("generator", {}).get("classes", {}).get("count", 1))
    options = ort.SessionOptions()
    options.log_severity_level = 3  # fp16 graphs on CPU log every Cast they get
    started = time.perf_counter()
    session = ort.InferenceSession(str(path), options, providers=providers_for(plan.provider))
    result: dict[str, Any] = {
        "file": path.name,
        "provider": session.get_providers()[0],
        "session_s": round(time.perf_counter() - started, 3),
        "batches": [],
        "stopped": None,
    }
    say(report, f"raw {label}: on {result['provider']} (session {result['session_s']} s)")
    if plan.provider == "cuda" and result["provider"] != CUDA:  # CPU figures are not wanted here
        result["stopped"] = (
            f"error: CUDA was asked for but the session got {result['provider']}: not measured"
        )
        say(report, f"raw {label}: {result['stopped']}")
        return result
    # Its share of the raw section's time, and no more than the run's budget leaves the servers.
    deadline = min(time.monotonic() + budget_s, report.deadline - reserve_s)
    rng = np.random.default_rng(0)
    item_bytes = 0.0  # inputs and outputs of one image or tile
    try:
        for batch in plan.batches:
            if item_bytes * batch > plan.max_io_mb * 2**20:
                result["stopped"] = (
                    f"memory bound: batch {batch}'s inputs and outputs would be "
                    f"{item_bytes * batch / 2**20:.0f} MiB > {plan.max_io_mb:.0f}"
                )
                break
            if time.monotonic() > deadline and batch > plan.batches[0]:  # the first size always runs
                result["stopped"] = f"time budget: its share ({budget_s:.1f} s) spent before batch {batch}"
                break
            feed = feed_for(session, batch, tile, classes, rng)
            first, out_bytes = run_once(session, feed)  # a new shape: allocations, cuDNN's choice
            item_bytes = (sum(a.nbytes for a in feed.values()) + out_bytes) / batch
            warm_up = min([first, *(run_once(session, feed)[0] for _ in range(plan.warmup_runs - 1))])
            if warm_up > plan.max_run_s:
                result["stopped"] = f"time bound: batch {batch} ran {warm_up:.2f} s > {plan.max_run_s} s"
                break
            times: list[float] = []
            timed_from = time.perf_counter()
            while len(times) < plan.min_runs or time.perf_counter() - timed_from < plan.raw_seconds:
                times.append(run_once(session, feed)[0])
                if len(times) >= 1000:
                    break
            per_s = batch * len(times) / sum(times)
            row = {
                "batch": batch,
                "runs": len(times),
                "per_s": round(per_s, 2),
                "median_ms": round(statistics.median(times) * 1000, 3),
                "p90_ms": round(float(np.percentile(times, 90)) * 1000, 3),
            }
            result["batches"].append(row)
            say(
                report,
                f"raw {label} batch {batch}: {per_s:,.1f} {'tiles' if tile else 'images'}/s, "
                f"median {row['median_ms']} ms, p90 {row['p90_ms']} ms ({len(times)} runs)",
            )
            if statistics.median(times) > plan.max_run_s:
                result["stopped"] = f"time bound: batch {batch}'s median run > {plan.max_run_s} s"
                break
    except Exception as exc:  # ONNX Runtime's errors have no common base: out of memory is one
        memory = any(w in str(exc).lower() for w in ("memory", "alloc"))
        result["stopped"] = f"{'memory bound' if memory else 'error'}: {type(exc).__name__}: {exc}"[:2000]
    finally:
        del session
    if result["stopped"]:
        say(report, f"raw {label}: stopped, {result['stopped'][:200]}")
    return result


def raw_section(report: Report, plan: Plan) -> None:
    raw: dict[str, Any] = report.data["raw"]
    graphs = {m: graphs_of(m, manifest_of(m)) for m in plan.models}
    left = sum(isinstance(g, Path) for gs in graphs.values() for g in gs.values())
    raw_deadline = time.monotonic() + plan.raw_budget_s
    planned = planned_seconds(plan)
    reserve_s = planned["plain"] + planned["service"]
    for model in plan.models:
        manifest = manifest_of(model)
        tile = manifest.get("upscaler", {}).get("tile")
        entry: dict[str, Any] = {
            "kind": kind_of(manifest),
            "unit": "tiles" if tile else "images",
            "tile": tile,
            "overlap": manifest.get("upscaler", {}).get("overlap"),
        }
        raw[model] = entry
        for precision, graph in graphs[model].items():
            report.enter(f"raw: {model} {precision}")
            if isinstance(graph, Path):
                budget_s = (raw_deadline - time.monotonic()) / left  # what the graphs before it left over
                left -= 1
                try:
                    entry[precision] = measure_graph(
                        report, plan, f"{model} {precision}", graph, manifest, budget_s, reserve_s
                    )
                except Exception as exc:  # the session could not be made: the next graph still runs
                    entry[precision] = {"file": graph.name, "stopped": f"error: {type(exc).__name__}: {exc}"}
                    say(report, f"raw {model} {precision}: failed, {entry[precision]['stopped'][:300]}")
                if str(entry[precision].get("stopped")).startswith("error"):  # not a bound: a failure
                    report.data["errors"][f"raw {model} {precision}"] = entry[precision]["stopped"][:2000]
                if "provider" in entry[precision]:
                    report.data["raw_providers"][f"{model} {precision}"] = entry[precision]["provider"]
            else:
                entry[precision] = {"skipped": graph}
                say(report, f"raw {model} {precision}: {graph}")


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


# --- the summary -----------------------------------------------------------------------------


def best_rate(entry: dict[str, Any], precisions: Sequence[str]) -> tuple[float, str]:
    """A raw model's best images (tiles) per second over its batch sizes at these precisions."""
    rates = [
        (r["per_s"], f"{p}, batch {r['batch']}")
        for p in precisions
        for r in entry.get(p, {}).get("batches", [])
    ]
    return max(rates, default=(0.0, ""))


def summary(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Per load: the raw limit (the best batch of the load's model at any precision, and at the
    precision the service ran; for upscaling, tiles/s divided by the tiles of one photo), the
    plain endpoint and the service."""
    rows = []
    for load in LOADS:
        model = GENERATOR if load.endpoint == "generate" else UPSCALER
        entry = data["raw"].get(model, {})
        served = data["service"]["models"].get(model, {})
        precision = served.get("graph_precision", served.get("precision"))
        tiles = 1
        if entry.get("tile"):
            tiles = len(plan_tiles(PHOTO_SIDE, PHOTO_SIDE, entry["tile"], entry["overlap"]).origins)
        best, how = best_rate(entry, ("fp32", "fp16"))
        limit = best / tiles
        same = best_rate(entry, (precision,))[0] / tiles if precision else 0.0
        plain = data["plain"]["loads"].get(load.name, {}).get("images_per_s")
        service = data["service"]["loads"].get(load.name, {}).get("images_per_s")
        rows.append(
            {
                "load": load.name,
                "model": model,
                "limit_images_per_s": round(limit, 3) or None,
                "limit_how": how or None,
                "service_precision": precision,
                "limit_at_service_precision": round(same, 3) or None,
                "plain_images_per_s": plain,
                "service_images_per_s": service,
                "service_vs_limit": round(service / limit, 3) if service and limit else None,
                "service_vs_plain": round(service / plain, 3) if service and plain else None,
            }
        )
    return rows


def provider_word(data: dict[str, Any], requested: str) -> str | None:
    """CPU or CUDA as every measured model ran, "mixed: ..." otherwise; with --provider cpu,
    CPU whatever ran (nothing else can)."""
    if requested == "cpu":
        return "CPU"
    seen = {
        *data.get("raw_providers", {}).values(),
        *data["plain"].get("providers", {}).values(),
        *(m["provider"] for m in data["service"].get("models", {}).values()),
    }
    short = sorted({p.removesuffix("ExecutionProvider") for p in seen})
    return None if not short else short[0] if len(short) == 1 else "mixed: " + ", ".join(short)


def stop_children(timeout: float = 15) -> None:
    """SIGTERM to this process's own children (a server being started when a signal came has no
    ServerProcess yet; load generator processes), SIGKILL to those still there after `timeout`
    seconds. Not multiprocessing's resource tracker: it ignores signals and ends with this process."""
    me = str(os.getpid())
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if stat.read_text().rsplit(")", 1)[1].split()[1] != me:
                continue
            if b"multiprocessing.resource_tracker" not in (stat.parent / "cmdline").read_bytes():
                children.append(int(stat.parent.name))
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in children:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.05)


def planned_seconds(plan: Plan) -> dict[str, float]:
    """What the sections should take, printed up front; the budget bounds the whole run."""
    graphs = sum(isinstance(g, Path) for m in plan.models for g in graphs_of(m, manifest_of(m)).values())
    per_batch = plan.raw_seconds + (0.3 if plan.quick else 0.2)  # timed runs and two warm-up runs
    raw = min(graphs * (2.0 + len(plan.batches) * per_batch), plan.raw_budget_s)
    load = plan.warmup_s + plan.seconds + (2.0 if plan.quick else 1.0)  # the requests out at the stop
    plain = (5.0 if plan.quick else 10.0) + len(LOADS) * load
    service = (5.0 if plan.quick else 30.0) + len(LOADS) * load
    planned = {
        "raw": round(raw if "raw" in plan.sections else 0.0, 1),
        "plain": round(plain if "plain" in plan.sections else 0.0, 1),
        "service": round(service if "service" in plan.sections else 0.0, 1),
    }
    return {**planned, "total": round(5 + sum(planned.values()), 1), "budget": plan.budget_s}


# --- the run ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan: Plan = args.plan
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = Report(args.out)
    report.deadline = report.started + plan.budget_s
    report.data.update(
        {
            "benchmark": "bench/gpu_bench.py",
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "finished_at": None,
            "command": list(getattr(sys, "orig_argv", [sys.executable, *sys.argv])),
            "partial": True,
            "section": "setup",
            "interrupted": None,
            "provider_requested": plan.provider,
            "provider": "CPU" if plan.provider == "cpu" else None,
            "plan": {
                **asdict(plan),
                "loads": [asdict(load) for load in LOADS],
                "generator": GENERATOR,
                "upscaler": UPSCALER,
                "photo_side": PHOTO_SIDE,
                "raw_method": "one session.run at a time in the benchmark's process, ONNX Runtime's "
                "default threads, inputs from host memory and outputs back to it (as the service runs)",
            },
            "planned_s": planned_seconds(plan),
            "errors": {},
            "raw": {},
            "raw_providers": {},
            "plain": {"providers": {}, "loads": {}},
            "service": {"models": {}, "loads": {}},
            "summary": [],
        }
    )
    servers: list[ServerProcess] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if report.data["interrupted"] is None:
            report.data["interrupted"] = signal.Signals(signum).name
            report.write()  # first, so a SIGKILL soon after still finds valid JSON
            raise Interrupted(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        # Setup: the machine, the versions, CUDA's libraries from the nvidia-* pip packages.
        planned = report.data["planned_s"]
        say(
            report,
            f"gpu_bench: provider {plan.provider}, models {', '.join(plan.models)}, sections "
            f"{', '.join(plan.sections)}; planned about {planned['total']:.0f} s (raw "
            f"{planned['raw']:.0f}, plain {planned['plain']:.0f}, service {planned['service']:.0f}), "
            f"budget {planned['budget']:.0f} s",
        )
        if plan.provider == "cuda" and hasattr(ort, "preload_dlls"):
            ort.preload_dlls()
        report.data["machine"] = machine()
        report.data["versions"] = versions()
        say(report, f"machine: {report.data['machine']}")
        if plan.provider == "cuda" and CUDA not in ort.get_available_providers():
            report.data["errors"]["setup"] = (
                f"--provider cuda: ONNX Runtime {ort.__version__} has no CUDA provider here "
                f"({', '.join(ort.get_available_providers())}); install onnxruntime-gpu and its nvidia-* "
                "packages, or rehearse with --provider cpu"
            )
            say(report, report.data["errors"]["setup"])
            report.data["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
            report.write()  # partial, in setup: nothing measured
            return 2
        server_env = {
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        }
        report.data["server_env"] = {**server_env, "LD_LIBRARY_PATH": os.environ.get("LD_LIBRARY_PATH")}
        images = photos(2 if plan.quick else 4)

        # Raw ONNX Runtime: every model, fp32 and fp16, one run at a time in this process.
        if "raw" in plan.sections:
            try:
                raw_section(report, plan)
            except Exception as exc:
                report.data["errors"]["raw"] = f"{type(exc).__name__}: {exc}"
                say(report, f"raw: failed, {report.data['errors']['raw']}")

        with tempfile.TemporaryDirectory(prefix="gpu-bench-") as scratch:
            # The plain FastAPI endpoint: one ONNX Runtime run per request, on the same provider.
            if "plain" in plan.sections:
                command = [
                    *(sys.executable, str(ROOT / "bench" / "plain_server.py")),
                    *("--generator", str(ROOT / "models" / GENERATOR / "1" / "model.onnx")),
                    *("--upscaler", str(ROOT / "models" / UPSCALER / "1" / "model.onnx")),
                    *("--provider", plan.provider),
                ]
                how: dict[str, Any] = {"command": command, "ready_path": "/docs"}
                server_section(report, plan, "plain", how, server_env, Path(scratch), servers, images)

            # The service: python -m service on the measured models and the loads', the same loads.
            if "service" in plan.sections:
                served = sorted({*plan.models, GENERATOR, UPSCALER})
                repository = ROOT / "models" if served == MODELS else model_subset(Path(scratch), served)
                how = {"settings": {"provider": plan.provider}, "models": repository}
                server_section(report, plan, "service", how, server_env, Path(scratch), servers, images)

        # The summary: each load against the raw limit and the plain endpoint.
        report.data["summary"] = summary(report.data)
        report.data["provider"] = provider_word(report.data, plan.provider)
        report.data.update(
            partial=False, section=None, finished_at=datetime.now(UTC).isoformat(timespec="seconds")
        )
        report.write()
        print_summary(report)
        return 1 if report.data["errors"] else 0
    except Interrupted as interrupted:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for server in servers:
            server.stop(timeout=10)
        stop_children()
        report.data["summary"] = summary(report.data)
        report.data["provider"] = provider_word(report.data, plan.provider)
        report.data.update(partial=True, finished_at=datetime.now(UTC).isoformat(timespec="seconds"))
        report.write()
        say(
            report, f"gpu_bench: {interrupted} during {report.data['section']}: partial results in {args.out}"
        )
        return 128 + interrupted.signum


def print_summary(report: Report) -> None:
    say(report, f"gpu_bench: provider {report.data['provider']}, wrote {report.path}")
    print(f"{'load':<34} {'limit':>11} {'plain':>11} {'service':>11} {'/limit':>7} {'/plain':>7}")

    def cell(value: float | None, width: int = 11) -> str:
        return f"{'-':>{width}}" if value is None else f"{value:>{width},.2f}"

    for row in report.data["summary"]:
        print(
            f"{row['load']:<34} {cell(row['limit_images_per_s'])} {cell(row['plain_images_per_s'])} "
            f"{cell(row['service_images_per_s'])} {cell(row['service_vs_limit'], 7)} "
            f"{cell(row['service_vs_plain'], 7)}"
        )
    for section, error in report.data["errors"].items():
        print(f"error in {section}: {error[:300]}")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
