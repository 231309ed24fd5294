"""Loading one published version: its manifest and model file verified, its sessions opened on the
chosen provider, and the served model of its kind made from them (blocking; the registry calls it
off the event loop)."""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from model_repository.manifest import MODEL_FILE
from model_repository.repository import read_version
from service.config import Settings
from service.metrics import ServiceMetrics
from service.served.admission import Shedding
from service.served.generator import Generator
from service.served.model import ServedModel
from service.served.providers import LandedOnCpu, ProviderChoice
from service.served.runtime import Runtime, choose_graph
from service.served.style import StyleGenerator
from service.served.upscaler import Upscaler

log = logging.getLogger("gan.models")

KINDS: dict[str, type[ServedModel]] = {kind.manifest_task: kind for kind in (Generator, Upscaler)}


def kind_of(manifest: dict[str, Any]) -> type[ServedModel]:
    """The served model class for a manifest: its task's, or StyleGenerator for a style G."""
    if "style" in manifest.get("generator", {}):
        return StyleGenerator
    kind = KINDS.get(str(manifest["task"]))
    if kind is None:
        raise ValueError(f"task {manifest['task']!r} is not served; served tasks: {', '.join(KINDS)}")
    return kind


def open_runtime(
    directory: Path,
    manifest: dict[str, Any],
    kind: type[ServedModel],
    settings: Settings,
    choice: ProviderChoice,
) -> Runtime:
    """The version's sessions on the chosen provider, its main graph chosen for it (fp16 or not)."""
    variant, precision = choose_graph(manifest, settings, choice.planned)
    extra = {graph: directory / file for graph, file in kind.graphs.items()}
    return Runtime(
        directory / (variant or MODEL_FILE), settings, choice, kind.memory_pattern, extra, precision
    )


def load_model(
    repo: Path,
    name: str,
    version: int,
    settings: Settings,
    metrics: ServiceMetrics,
    encode_pool: Executor,
    shedding: Shedding,
    choice: ProviderChoice,
) -> ServedModel:
    """Verify a published version (manifest schema, sha256 of the model file), open its session,
    and make the served model of its task. Blocking (call off the event loop); raises on anything
    wrong with the version."""
    manifest = read_version(repo, name, version)
    kind = kind_of(manifest)
    directory = repo / name / str(version)
    try:
        runtime = open_runtime(directory, manifest, kind, settings, choice)
    except LandedOnCpu as fell:  # planned for CUDA, given the CPU: the CPU's plan and graph
        runtime = open_runtime(directory, manifest, kind, settings, choice.on_cpu(str(fell)))
    model = kind(name, version, manifest, runtime, settings, metrics, encode_pool, shedding)
    plan = runtime.parallelism
    log.info(
        "loaded %s version %d (%s) on %s (%s, %s): %d batch(es) at once, %s ONNX Runtime thread(s) each%s",
        name,
        version,
        kind.manifest_task,
        runtime.provider,
        runtime.file,
        runtime.precision,
        plan.lanes,
        plan.intra_op_threads or "default",
        f", pinned to cores {list(plan.pinned_cores)}" if plan.pinned_cores else "",
    )
    return model
