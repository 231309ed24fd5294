"""bench/gpu_bench.py's first section: raw ONNX Runtime throughput of each bundled model at every
batch size, fp32 and fp16 where the manifest lists an fp16 graph, on the provider asked for (and
the provider each session really got): the limit the servers are measured against."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bench.gpu_plan import (
    CUDA,
    DTYPES,
    LOADS,
    ROOT,
    Plan,
    Report,
    providers_for,
    say,
)

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
