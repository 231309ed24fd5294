"""The ONNX Runtime layer: which execution provider, how a model's batches use the cores, and one
model file's inference session. Nothing else in the service imports onnxruntime."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from service.config import Settings

log = logging.getLogger("gan.runtime")

MAIN = "model"  # the graph in model.onnx
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


def usable_cpus() -> list[int]:
    """The cores this process may run on (a container's cpuset, not the host's cores)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


@dataclass(frozen=True)
class Parallelism:
    """How one model runs its batches."""

    lanes: int  # batches run at once, one inference thread each
    intra_op_threads: int  # ONNX Runtime threads per run; 0: its default
    pinned_cores: tuple[int, ...] = ()  # lane i runs on pinned_cores[i % len]; empty: not pinned
    # Encode on the lane that ran the batch (True) or hand the batch to the encode pool (False).
    encode_on_lane: bool = False


def plan_parallelism(settings: Settings, provider: str, cpus: list[int]) -> Parallelism:
    """How a model on `provider` runs its batches, given the cores the process may use.

    On CPU the default is one batch per core, each run on one thread: a run split across cores
    stalls on its slowest part whenever the event loop or an encoder holds one of those cores,
    while whole runs side by side keep every core busy. Such single-threaded lanes are pinned one
    per core: the scheduler otherwise tends to stack them on one core while the other idles
    between the event loop's bursts (the more so when they run at a lower priority). With a lane
    per core, a lane's core encodes its batch either way, so it does it itself: a hand-off to the
    encode pool would only add thread wake-ups. On CUDA one batch at a time keeps the device's
    queue in order, and the encode pool works while the lane feeds the device its next batch; 0
    threads leaves ONNX Runtime's default for its CPU-side work."""
    if provider == CUDA:
        return Parallelism(settings.concurrent_batches or 1, settings.intra_op_threads)
    lanes = settings.concurrent_batches or len(cpus)
    threads = settings.intra_op_threads or max(1, len(cpus) // lanes)
    pinned = tuple(cpus) if settings.pin_inference_threads and threads == 1 and lanes > 1 else ()
    return Parallelism(lanes, threads, pinned, encode_on_lane=threads == 1 and lanes >= len(cpus))


def make_session(
    path: Path, settings: Settings, providers: list[Any], intra_op_threads: int, memory_pattern: bool = True
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.log_severity_level = 3
    # ORT's pool threads busy-wait between ops by default: on a small CPU that steals the cores
    # the event loop and the encoders need. Sleep instead.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    # The memory pattern plans one block per input shape holding every intermediate tensor of a
    # run at once: for a generator's small tensors that saves allocations, for an upscaler's
    # (hundreds of MB a tile batch at x4) the arena, which keeps what a session has used for
    # reuse, would hold it all for the life of the process. Without the pattern, tensors freed
    # during a run are reused within it: an x4 upscaler on two lanes holds 193 MB instead of
    # 313 MB (one tile a batch), at the same speed. The arena itself stays: without it every run
    # would map and fault in its buffers afresh (13 % slower at x4).
    options.enable_mem_pattern = memory_pattern
    return ort.InferenceSession(str(path), options, providers=providers)


class Runtime:
    """One model version's ONNX Runtime sessions (model.onnx; a style generator's mapping.onnx
    too), and how its batches run on this machine."""

    def __init__(
        self,
        path: Path,
        settings: Settings,
        providers: list[Any],
        memory_pattern: bool = True,
        extra: dict[str, Path] | None = None,
    ) -> None:
        """path: model.onnx; extra: the version's other graphs by name (run with run(feed, name))."""
        started = time.perf_counter()
        planned = CPU if providers[0] == CPU else CUDA
        self.parallelism = plan_parallelism(settings, planned, usable_cpus())
        threads = self.parallelism.intra_op_threads
        self.sessions = {
            name: make_session(file, settings, providers, threads, memory_pattern)
            for name, file in {MAIN: path, **(extra or {})}.items()
        }
        self.provider: str = self.sessions[MAIN].get_providers()[0]
        self.input_names = [i.name for i in self.sessions[MAIN].get_inputs()]
        self.load_seconds = time.perf_counter() - started

    def run(self, feed: dict[str, np.ndarray], graph: str = MAIN) -> np.ndarray:
        """One batch; called from an inference lane (ONNX Runtime releases the GIL while it runs)."""
        return np.asarray(self.sessions[graph].run(None, feed)[0])

    def release(self) -> None:
        """Free the sessions (their weights and memory arenas) now; the lanes must have stopped."""
        self.sessions.clear()

    def info(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "concurrent_batches": self.parallelism.lanes,
            "intra_op_threads": self.parallelism.intra_op_threads,
            "pinned_cores": list(self.parallelism.pinned_cores),
            "load_seconds": round(self.load_seconds, 3),
        }
