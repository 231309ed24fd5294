"""The served models: the latest valid version of each model in the repository, each with its ONNX
Runtime session. A model that fails to load is reported and skipped; the others still serve."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from model_export.manifest import MODEL_FILE
from model_export.repository import list_models, list_versions, read_version
from service.config import Settings

log = logging.getLogger("gan.models")

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def choose_providers(preference: str) -> list[Any]:
    """CUDA when asked for or available, else CPU. cuDNN's exhaustive per-shape algorithm search
    would make the first request at each new shape slow: use its heuristic choice instead."""
    available = ort.get_available_providers()
    if preference in ("auto", "cuda") and CUDA in available:
        return [(CUDA, {"cudnn_conv_algo_search": "HEURISTIC", "do_copy_in_default_stream": True}), CPU]
    if preference == "cuda":
        log.warning(
            "CUDA was asked for but ONNX Runtime has no CUDA provider here (%s): using CPU", available
        )
    return [CPU]


def cpu_count() -> int:
    """Cores this process may run on (a container's cpuset, not the host's core count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def plan_parallelism(settings: Settings, provider: str, cpus: int) -> tuple[int, int]:
    """(batches run at once, ONNX Runtime intra-op threads per run) for a model on `provider`.

    On CPU the default is one batch per core, each run on one thread: a run split across cores
    stalls on its slowest part whenever the event loop or an encoder holds one of those cores,
    while whole runs side by side keep every core busy. On CUDA one batch at a time keeps the
    device's queue in order; 0 threads leaves ONNX Runtime's default for its CPU-side work."""
    if provider == CUDA:
        return settings.concurrent_batches or 1, settings.intra_op_threads
    lanes = settings.concurrent_batches or cpus
    return lanes, settings.intra_op_threads or max(1, cpus // lanes)


@dataclass
class LoadedModel:
    name: str
    version: int
    manifest: dict[str, Any]
    session: ort.InferenceSession
    provider: str
    load_seconds: float
    input_names: list[str] = field(default_factory=list)
    concurrent_batches: int = 1
    intra_op_threads: int = 0  # 0: ONNX Runtime's default

    @property
    def task(self) -> str:
        return str(self.manifest["task"])

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """One batch through ONNX Runtime; called from an inference thread (ORT releases the GIL)."""
        return np.asarray(self.session.run(None, feed)[0])

    def info(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "concurrent_batches": self.concurrent_batches,
            "intra_op_threads": self.intra_op_threads,
            "load_seconds": round(self.load_seconds, 3),
            **self.manifest,
        }


def make_session(path: Path, settings: Settings, intra_op_threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.log_severity_level = 3
    # ORT's pool threads busy-wait between ops by default: on a small CPU that steals the cores
    # the event loop and the encoders need. Sleep instead.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=choose_providers(settings.provider))


def load_models(settings: Settings) -> tuple[dict[str, LoadedModel], dict[str, str]]:
    """(loaded models by name, failures by name -> reason). Serves each model's newest version."""
    repo = settings.models_dir
    loaded: dict[str, LoadedModel] = {}
    failures: dict[str, str] = {}
    if not repo.is_dir():
        failures["*"] = f"model repository {repo} does not exist"
        return loaded, failures
    for name in list_models(repo):
        versions = list_versions(repo, name)
        if not versions:
            continue
        version = versions[-1]
        start = time.perf_counter()
        try:
            manifest = read_version(repo, name, version)
            provider = CUDA if choose_providers(settings.provider)[0] != CPU else CPU
            lanes, threads = plan_parallelism(settings, provider, cpu_count())
            session = make_session(repo / name / str(version) / MODEL_FILE, settings, threads)
        except Exception as e:  # a broken model must not stop the others: report it, go on
            failures[name] = f"version {version}: {e}"
            log.error("model %s version %s failed to load: %s", name, version, e)
            continue
        provider = session.get_providers()[0]
        loaded[name] = LoadedModel(
            name=name,
            version=version,
            manifest=manifest,
            session=session,
            provider=provider,
            load_seconds=time.perf_counter() - start,
            input_names=[i.name for i in session.get_inputs()],
            concurrent_batches=lanes,
            intra_op_threads=threads,
        )
        log.info(
            "loaded %s version %d (%s) on %s: %d batch(es) at once, %s ONNX Runtime thread(s) each",
            name,
            version,
            manifest["task"],
            provider,
            lanes,
            threads or "default",
        )
    return loaded, failures
