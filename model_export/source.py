"""Read what export starts from: a generator file (`generator.pt`) or a training checkpoint
(`checkpoints/step_N.pt`), and rebuild the generator from its own constructor arguments.

Only the network registry (`training.models`) is imported, never a training loop. Files are read
with `weights_only=True`: a foreign pickle cannot run code here.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model_export.errors import ExportError
from model_repository.manifest import sha256_file
from training.models import GENERATOR_FORMAT, GENERATOR_FORMAT_VERSION, GENERATORS, build_generator

UPSCALER_KINDS = {"srresnet"}


@dataclass
class Source:
    """A generator ready to export, with everything the manifest says about where it came from."""

    path: Path
    sha256: str
    format: str  # "generator file" | "training checkpoint"
    step: int | None
    kind: str
    config: dict[str, Any]
    generator: nn.Module  # eval mode, CPU, float32
    weights: str  # "ema" | "raw"
    training: dict[str, Any]
    data: dict[str, Any]
    metrics: dict[str, Any]
    # A model made elsewhere (model_export.adopt): its declared task, what probing found, and, for
    # TorchScript and ONNX sources, the user's own ONNX graph, which export wraps instead of tracing.
    adopted_task: str | None = None
    image_shape: tuple[int, int, int] | None = None  # (C, H, W) of a generator's images
    receptive_radius: int | None = None  # an upscaler's
    raw_onnx: Any = None  # onnx.ModelProto
    interface: Any = None  # model_export.adopt_interface.Interface
    parameter_count: int | None = None  # an ONNX source's (its initializers'), which torch cannot count

    @property
    def task(self) -> str:
        if self.adopted_task is not None:
            return self.adopted_task
        return "upscale" if self.kind in UPSCALER_KINDS else "generate"

    @property
    def parameters(self) -> int:
        if self.parameter_count is not None:
            return self.parameter_count
        return sum(p.numel() for p in self.generator.parameters())


def load_source(path: Path) -> Source:
    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    payload = _read_payload(path)
    if payload.get("format") == GENERATOR_FORMAT:
        return _from_generator_file(path, payload)
    if "generator" in payload and "config" in payload and "step" in payload:
        return _from_training_checkpoint(path, payload)
    keys = ", ".join(sorted(str(k) for k in payload)[:8])
    raise ExportError(
        f"{path}: not a gan-serving generator file or training checkpoint (top-level keys: {keys})"
    )


def _read_payload(path: Path) -> dict[str, Any]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message is long advice; the line after "WeightsUnpickler error:" is the reason.
        reason = str(e).split("WeightsUnpickler error:")[-1].strip().split("\n")[0].strip()
        if "global" in reason.lower():  # a pickle that would construct arbitrary objects
            raise ExportError(
                f"{path}: refused: the file would construct Python objects, not just tensors ({reason})"
            ) from None
        raise ExportError(
            f"{path}: not a readable PyTorch checkpoint (corrupt or truncated?): {reason}"
        ) from None
    except Exception as e:  # garbage bytes fail anywhere in the unpickler (IndexError, KeyError, ...)
        raise ExportError(f"{path}: not a readable PyTorch checkpoint (corrupt or truncated?): {e}") from None
    if not isinstance(payload, dict):
        raise ExportError(f"{path}: holds a {type(payload).__name__}, not a checkpoint dictionary")
    return payload


def _from_generator_file(path: Path, payload: dict[str, Any]) -> Source:
    if payload.get("format_version") != GENERATOR_FORMAT_VERSION:
        raise ExportError(
            f"{path}: generator file format_version {payload.get('format_version')!r}; "
            f"this export reads version {GENERATOR_FORMAT_VERSION}"
        )
    kind, config = payload.get("kind"), payload.get("config")
    generator = _rebuild(path, kind, config, payload.get("state_dict"))
    training = dict(payload.get("training") or {})
    return Source(
        path=path,
        sha256=sha256_file(path),
        format="generator file",
        step=_int_or_none(payload.get("metrics", {}).get("step")),
        kind=str(kind),
        config=dict(config or {}),
        generator=generator,
        weights=str(payload.get("weights", "raw")),
        training=training,
        data=dict(payload.get("data") or {}),
        metrics=_scalars(payload.get("metrics") or {}),
    )


def _from_training_checkpoint(path: Path, payload: dict[str, Any]) -> Source:
    kind, config = payload.get("generator_kind"), payload.get("generator_config")
    if kind is None or config is None:
        raise ExportError(
            f"{path}: a training checkpoint without the generator's constructor arguments (written "
            "by an older version); export the run's generator.pt instead"
        )
    ema_state = payload.get("generator_ema")
    state = ema_state if ema_state is not None else payload["generator"]
    generator = _rebuild(path, kind, config, state)
    run_config = payload.get("config") or {}
    step = int(payload["step"])
    task = "upscale" if kind in UPSCALER_KINDS else "generate"
    training = {
        "task": task,
        "model": kind,
        "steps": step,
        "loss": run_config.get("loss") or run_config.get("pixel_loss"),
        "data": run_config.get("data"),
        "seed": run_config.get("seed"),
        "batch_size": run_config.get("batch_size"),
    }
    if task == "upscale":
        training |= {"stage": run_config.get("stage"), "scale": run_config.get("scale")}
    return Source(
        path=path,
        sha256=sha256_file(path),
        format="training checkpoint",
        step=step,
        kind=str(kind),
        config=dict(config),
        generator=generator,
        weights="ema" if ema_state is not None else "raw",
        training={k: v for k, v in training.items() if v is not None},
        data=dict(payload.get("data") or {}),
        metrics={},  # quality is measured at the end of a run, not stored in every checkpoint
    )


def _rebuild(path: Path, kind: Any, config: Any, state: Any) -> nn.Module:
    if not isinstance(kind, str) or kind not in GENERATORS:
        raise ExportError(f"{path}: unknown architecture {kind!r}; this export knows {', '.join(GENERATORS)}")
    if not isinstance(config, dict):
        raise ExportError(f"{path}: the generator's constructor arguments are missing")
    if not isinstance(state, dict):
        raise ExportError(f"{path}: the generator's weights are missing")
    try:
        generator = build_generator(kind, config)
    except (TypeError, ValueError) as e:
        raise ExportError(f"{path}: cannot rebuild the {kind} generator from its arguments: {e}") from None
    try:
        generator.load_state_dict(state)
    except RuntimeError as e:
        detail = str(e).strip().splitlines()
        raise ExportError(
            f"{path}: the weights do not fit the {kind} generator: {' '.join(d.strip() for d in detail[:3])}"
        ) from None
    return generator.float().eval()


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _scalars(values: dict[str, Any]) -> dict[str, Any]:
    """Numbers (finite: JSON has no NaN) and strings; flags, nested values and the metrics log's
    own bookkeeping ("event") are left out."""
    return {
        k: v
        for k, v in values.items()
        if k != "event"
        and (
            isinstance(v, str)
            or (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v))
        )
    }
