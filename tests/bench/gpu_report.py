"""What a quick CPU run of bench/gpu_bench.py must have written: every section, positive figures, and
CPU as every figure's provider. Used by the rehearsal of scripts/gpu/check.sh
(tests/scripts/test_gpu_scripts.py), which runs the bench as the GPU machine would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.gpu_plan import LOADS, QUICK_BATCHES, QUICK_MODELS

ROOT = Path(__file__).resolve().parents[2]
CPU = "CPUExecutionProvider"


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and value > 0


def check_quick_report(report: dict[str, Any]) -> None:

    assert report["partial"] is False and report["section"] is None and report["interrupted"] is None
    assert report["errors"] == {}
    assert report["provider"] == "CPU" and report["provider_requested"] == "cpu"
    assert report["started_at"] and report["finished_at"] and "--quick" in report["command"]
    assert positive(report["machine"]["cpu_count"]) and report["machine"]["cpu_model"]
    assert "gpus" in report["machine"]  # nvidia-smi's line per GPU, or null
    versions = report["versions"]
    assert versions["onnxruntime"] and versions["numpy"] and versions["python"]
    assert "onnxruntime_build_info" in versions and "nvidia_packages" in versions

    # Raw ONNX Runtime: one model of each kind, fp32 at every quick batch size.
    assert set(report["raw"]) == set(QUICK_MODELS)
    assert {entry["kind"] for entry in report["raw"].values()} == {"generate", "style", "upscale"}
    for model, entry in report["raw"].items():
        for precision in ("fp32", "fp16"):
            graph = entry[precision]
            if precision == "fp16" and "skipped" in graph:  # a manifest without variants.fp16
                continue
            assert graph["provider"] == CPU, (model, graph)
            rows = graph["batches"]
            assert [r["batch"] for r in rows] == QUICK_BATCHES[: len(rows)] and rows, (model, graph)
            for row in rows:
                assert all(positive(row[k]) for k in ("per_s", "median_ms", "p90_ms", "runs")), row
                assert row["p90_ms"] >= row["median_ms"]
        if entry["unit"] == "tiles":
            assert (
                entry["tile"]
                == json.loads((ROOT / "models" / model / "1" / "manifest.json").read_text())["upscaler"][
                    "tile"
                ]
            )
    assert set(report["raw_providers"].values()) == {CPU}

    # The plain endpoint and the service: every load answered, on CPU.
    assert set(report["plain"]["providers"].values()) == {CPU}
    assert set(report["service"]["models"]) >= set(QUICK_MODELS)
    assert {m["provider"] for m in report["service"]["models"].values()} == {CPU}
    for system in ("plain", "service"):
        assert set(report[system]["loads"]) == {load.name for load in LOADS}
        for name, load in report[system]["loads"].items():
            assert load["ok"] > 0 and load["errors"] == {} and load["cut_off"] == 0, (system, name, load)
            assert all(positive(load[k]) for k in ("images_per_s", "p50_ms", "p99_ms", "window_s")), load

    # The summary: each load against the raw limit.
    assert [row["load"] for row in report["summary"]] == [load.name for load in LOADS]
    for row in report["summary"]:
        assert all(positive(row[k]) for k in ("limit_images_per_s", "plain_images_per_s", "service_vs_limit"))
        assert row["service_precision"] == "fp32"  # on CPU the service runs model.onnx
        assert positive(row["limit_at_service_precision"])
