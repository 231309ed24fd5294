"""Which ONNX Runtime execution provider the models run on, and saying so when it is not the one
asked for.

A service asked for CUDA ends up on the CPU, ten to a hundred times slower, when onnxruntime has no
CUDA provider (found before any model loads: `choose_providers`) or when its CUDA library cannot
load and ONNX Runtime quietly falls back (found when a session opens: `Runtime` compares). Both
are logged at ERROR and listed in /readyz's `warnings`; with `provider_strict` they stop the start
instead (`ProviderUnavailable`).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, replace
from typing import Any

import onnxruntime as ort

from service.config import Settings

log = logging.getLogger("gan.runtime")

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class ProviderUnavailable(RuntimeError):
    """CUDA was asked for strictly (provider=cuda, provider_strict) and cannot be had."""


class LandedOnCpu(RuntimeError):
    """A session planned for CUDA was given the CPU (not strict): the model is opened again,
    planned for the CPU (service.lifecycle.loading.load_model)."""


@dataclass(frozen=True)
class ProviderChoice:
    """What the sessions are given, and why."""

    providers: list[Any]  # for ort.InferenceSession(providers=...)
    planned: str  # CUDA or CPU: what every session should end up on
    asked: str  # the provider setting: auto, cpu or cuda
    strict: bool  # refuse rather than fall back to CPU
    fallback: str = ""  # why CPU although CUDA was asked for ("" when as asked)

    def on_cpu(self, why: str) -> ProviderChoice:
        """The same choice fallen back to the CPU, saying why."""
        return replace(self, providers=[CPU], planned=CPU, fallback=why)

    def summary(self) -> str:
        """The line the service logs first: where inference runs, and why."""
        where = "CUDA (GPU)" if self.planned == CUDA else "CPU"
        line = f"inference on {where} with onnxruntime {ort.__version__} (provider setting: {self.asked})"
        return f"{line}: {self.fallback}" if self.fallback else line


def cuda_provider_options(settings: Settings) -> dict[str, str]:
    """The CUDA provider's options. cuDNN's exhaustive per-shape algorithm search would make the
    first batch of each new shape slow: its heuristic choice instead. CUDA graphs replay a batch's
    kernels in one launch; they need every input and output bound at a fixed device address (the
    IO binding does that) and one graph per batch shape (a run option names it). TF32 off: an fp32
    graph gives the CPU's pixels within a level (TF32's 10-bit mantissa does not); the fast path
    on a GPU is the fp16 graph."""
    options = {"cudnn_conv_algo_search": "HEURISTIC", "do_copy_in_default_stream": "1", "use_tf32": "0"}
    if settings.cuda_graphs:
        options["enable_cuda_graph"] = "1"
    return options


@functools.cache  # once per process: the CLI's strict check and the registry both choose
def preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from the nvidia-* pip packages when they are installed (a machine with
    no system CUDA, such as a PyTorch environment): onnxruntime-gpu finds them then. Where it
    cannot, the system's libraries may serve instead: logged at debug only."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        log.debug("onnxruntime %s cannot preload CUDA libraries", ort.__version__)
        return
    try:
        preload()
    except Exception as e:  # no nvidia-* packages: the system's libraries are used, if any
        log.debug("no CUDA libraries preloaded from pip packages: %s", e)


def choose_providers(settings: Settings) -> ProviderChoice:
    """CUDA when asked for (cuda) or available (auto), else CPU; raises ProviderUnavailable when
    CUDA is asked for strictly and ONNX Runtime has no CUDA provider."""
    # Strict is for provider=cuda: auto means "the GPU if there is one", CPU included.
    asked, strict = settings.provider, settings.provider_strict and settings.provider == "cuda"
    if expected_provider(settings) == CUDA:
        preload_cuda_libraries()
        return ProviderChoice([(CUDA, cuda_provider_options(settings)), CPU], CUDA, asked, strict)
    if asked != "cuda":
        return ProviderChoice([CPU], CPU, asked, strict)
    why = (
        f"this ONNX Runtime (onnxruntime {ort.__version__}) has no CUDA provider (it has "
        f"{', '.join(ort.get_available_providers())}): install the gpu extra (onnxruntime-gpu), "
        "not onnxruntime"
    )
    if strict:
        raise ProviderUnavailable(f"CUDA was asked for (provider=cuda, provider_strict) but {why}")
    log.error("CUDA was asked for (provider=cuda) but %s: serving on CPU", why)
    return ProviderChoice([CPU], CPU, asked, strict, fallback=f"CUDA was asked for but {why}")


def expected_provider(settings: Settings) -> str:
    """The provider the models will be planned for (before any session opens)."""
    return CUDA if settings.provider != "cpu" and CUDA in ort.get_available_providers() else CPU


def fell_back(choice: ProviderChoice, got: str) -> str:
    """'' when a session is on the planned provider; else what to tell the operator."""
    if choice.planned == got:
        return ""
    return (
        f"ONNX Runtime has a CUDA provider but gave this model the CPU ({got}): the CUDA provider "
        "could not be used (ONNX Runtime's own error is printed above: a CUDA or cuDNN library "
        "missing or of another major version, see docker/gpu-stack.json; a driver too old for "
        "that CUDA; too little GPU memory)"
    )
