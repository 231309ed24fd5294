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
from service.served.binding import BoundSession
from service.served.buckets import BatchBuckets
from service.served.providers import CUDA, LandedOnCpu, ProviderChoice, ProviderUnavailable, fell_back

log = logging.getLogger("gan.runtime")

MAIN = "model"  # the graph in model.onnx


def choose_graph(manifest: dict[str, Any], settings: Settings, provider: str) -> tuple[str | None, str]:
    """Which file of a version runs as its main graph, and at what precision: (None: model.onnx,
    its manifest's precision), or the fp16 graph its manifest lists (variants.fp16) where the
    precision setting says so (auto: on CUDA, where half precision is about twice as fast; on
    CPU it is slower than fp32)."""
    variant = manifest.get("variants", {}).get("fp16", {}).get("file", {}).get("name")
    wanted = settings.precision == "fp16" or (settings.precision == "auto" and provider == CUDA)
    if variant and wanted and manifest.get("precision") != "fp16":
        return str(variant), "fp16"
    return None, str(manifest.get("precision", "fp32"))


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
    encode pool would only add thread wake-ups. On CUDA the device runs one batch at a time (one
    stream), and the host's cores work around it: two lanes by default, so that while one waits on
    the device the other makes its batch's rows (latents, noise) and copies them in, and the device
    finds the next batch ready; the encode pool encodes what they return. One lane with CUDA graphs
    (a captured graph replays one lane's buffers). 0 threads leaves ONNX Runtime's default for its
    CPU-side work."""
    if provider == CUDA:
        lanes = settings.concurrent_batches or (1 if settings.cuda_graphs else 2)
        return Parallelism(lanes, settings.intra_op_threads)
    lanes = settings.concurrent_batches or len(cpus)
    threads = settings.intra_op_threads or max(1, len(cpus) // lanes)
    pinned = tuple(cpus) if settings.pin_inference_threads and threads == 1 and lanes > 1 else ()
    return Parallelism(lanes, threads, pinned, encode_on_lane=threads == 1 and lanes >= len(cpus))


def plan_encode_threads(settings: Settings, provider: str, cpus: list[int]) -> int:
    """Threads that decode uploads and encode images. On CPU the lanes encode their own batches
    on their cores, and two threads take the rest (uploads, batches that spanned lanes). On a GPU
    host the cores are free for it: all but two (the event loop; the lanes, which mostly wait on
    the device), so that encoding keeps up with a device that makes thousands of images a second."""
    if settings.encode_threads:
        return settings.encode_threads
    return max(2, len(cpus) - 2) if provider == CUDA else 2


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
    """One model version's ONNX Runtime sessions (model.onnx or its fp16 graph; a style generator's
    mapping.onnx too), and how its batches run on this machine: its lanes, its batch buckets
    (padding), IO binding."""

    def __init__(
        self,
        path: Path,
        settings: Settings,
        choice: ProviderChoice,
        memory_pattern: bool = True,
        extra: dict[str, Path] | None = None,
        precision: str = "fp32",
    ) -> None:
        """path: the main graph's file; extra: the version's other graphs by name (run with
        run(feed, name)). Raises ProviderUnavailable when a session lands on CPU although CUDA
        was planned and provider_strict is set."""
        started = time.perf_counter()
        self.parallelism = plan_parallelism(settings, choice.planned, usable_cpus())
        threads = self.parallelism.intra_op_threads
        self.sessions = {
            name: make_session(file, settings, choice.providers, threads, memory_pattern)
            for name, file in {MAIN: path, **(extra or {})}.items()
        }
        self.provider: str = self.sessions[MAIN].get_providers()[0]
        self.fallback = choice.fallback or fell_back(choice, self.provider)
        if self.fallback and choice.planned == CUDA:
            if choice.strict:
                raise ProviderUnavailable(f"{path.parent}: {self.fallback}")
            # Planned for a GPU (two lanes, ORT's threads, the fp16 graph): plan again for the CPU.
            log.error("%s: %s; serving on CPU", path.parent, self.fallback)
            raise LandedOnCpu(self.fallback)
        if self.provider == CUDA:
            # A CUDA failure while running (ONNX Runtime would quietly retry the run on CPU, and
            # the model would go on there unseen) fails the batch instead: 500, logged.
            for session in self.sessions.values():
                session.disable_fallback()
        self.precision = precision
        self.file = path.name
        self.input_names = [i.name for i in self.sessions[MAIN].get_inputs()]
        # Inputs whose first axis is the batch (declared symbolic): padding to a bucket extends them.
        self.batched = {
            name: frozenset(
                i.name for i in session.get_inputs() if i.shape and not isinstance(i.shape[0], int)
            )
            for name, session in self.sessions.items()
        }
        self.buckets: BatchBuckets | None = None  # set by the served model (it knows its largest batch)
        on = settings.io_binding == "on" or (settings.io_binding == "auto" and self.provider == CUDA)
        device = "cuda" if self.provider == CUDA else "cpu"
        graphs = settings.cuda_graphs and self.provider == CUDA
        self.bound = (
            {name: BoundSession(s, device, graphs) for name, s in self.sessions.items()} if on else {}
        )
        self.load_seconds = time.perf_counter() - started

    def use_buckets(self, largest: int, setting: str) -> BatchBuckets:
        """Batches of up to `largest` rows, padded up to the buckets the setting (or the provider's
        default) gives; returns them (the warm-up runs each)."""
        self.buckets = BatchBuckets.plan(setting, self.provider == CUDA, largest)
        return self.buckets

    def run(self, feed: dict[str, np.ndarray], graph: str = MAIN) -> np.ndarray:
        """One batch; called from an inference lane (ONNX Runtime releases the GIL while it runs).
        A batch of a bucket's size (padded up to one) runs through its kept binding, if bound;
        any other (no buckets, more rows than the largest) runs as it is."""
        rows, bucketed = None, False
        if self.buckets is not None:
            feed, rows, bucketed = self.buckets.pad(feed, self.batched[graph])
        bound = self.bound.get(graph)
        if bound is None:
            output = np.asarray(self.sessions[graph].run(None, feed)[0])
        else:
            output = bound.run(feed) if bucketed else bound.run_unbound(feed)
        return output if rows is None or rows == len(output) else output[:rows]

    def release(self) -> None:
        """Free the sessions (their weights, memory arenas and bound buffers) now; the lanes must
        have stopped."""
        self.bound.clear()
        self.sessions.clear()

    def info(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            **({"provider_fallback": self.fallback} if self.fallback else {}),
            "graph": self.file,
            "graph_precision": self.precision,
            "io_binding": bool(self.bound),
            "batch_buckets": list(self.buckets.sizes) if self.buckets else [],
            "concurrent_batches": self.parallelism.lanes,
            "intra_op_threads": self.parallelism.intra_op_threads,
            "pinned_cores": list(self.parallelism.pinned_cores),
            "load_seconds": round(self.load_seconds, 3),
        }
