"""bench/gpu_bench.py's plan and record: the models and loads it measures, how long each part may
take (`Plan`), the JSON it writes as it goes (`Report`, partial on a signal), and the machine and
software versions it records."""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]


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
