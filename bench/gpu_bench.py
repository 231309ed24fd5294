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
Its parts: the plan and the record (bench/gpu_plan.py), the raw section (bench/gpu_raw.py), the
loads and server sections (bench/gpu_loads.py); here, the summary and the run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gpu_loads import photos, server_section
from bench.gpu_plan import (
    BATCHES,
    CUDA,
    GENERATOR,
    LOADS,
    MODELS,
    PHOTO_SIDE,
    QUICK_BATCHES,
    QUICK_MODELS,
    ROOT,
    UPSCALER,
    Interrupted,
    Plan,
    Report,
    machine,
    say,
    versions,
)
from bench.gpu_raw import planned_seconds, raw_section
from bench.server import ServerProcess, model_subset
from model_repository.tiling import plan_tiles


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
        grace_s=60.0 if args.quick else 30.0,  # quick, on a busy CPU: a 512 px x4 upscale takes 20 s
        start_timeout_s=60.0 if args.quick else 120.0,
        budget_s=args.budget or (120.0 if args.quick else 300.0),
        loadgen_processes=args.loadgen_processes
        or (2 if args.quick else max(1, min(4, (os.cpu_count() or 1) // 4))),
    )
    return args


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
