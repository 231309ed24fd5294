"""What a model made elsewhere takes and gives, as declared on the command line (`Interface`):
the task, latent size, classes, the output's value range and layout; for an upscaler the scale
and the input's range. What can be probed is checked against it later (model_export.adopt_probing);
the ONNX wrapper (model_export.onnx_wrap) builds its nodes from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from model_export.errors import ExportError

TASKS = ("generate", "upscale")
LAYOUTS = ("nchw", "nhwc")
LABEL_FORMATS = ("index", "onehot")


@dataclass(frozen=True)
class Interface:
    """What a foreign model takes and gives, as declared on the command line."""

    task: str
    output_range: tuple[float, float]
    layout: str = "nchw"
    latent_size: int | None = None  # generate
    classes: int = 0  # generate: 0 = unconditional
    class_names: tuple[str, ...] = ()
    label_format: str = "index"  # how the model takes labels: int64 indices, or one-hot floats
    scale: int | None = None  # upscale
    input_range: tuple[float, float] = (0.0, 1.0)  # upscale: what the model expects its pixels in
    receptive_radius: int | None = None  # upscale: probed when not declared

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ExportError(f"--task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.layout not in LAYOUTS:
            raise ExportError(f"--layout must be nchw or nhwc, got {self.layout!r}")
        if self.label_format not in LABEL_FORMATS:
            raise ExportError(f"--label-format must be index or onehot, got {self.label_format!r}")
        for what, (low, high) in (("--output-range", self.output_range), ("--input-range", self.input_range)):
            if not (np.isfinite(low) and np.isfinite(high) and high > low):
                raise ExportError(f"{what} must be LOW,HIGH with LOW < HIGH, got {low},{high}")
        if self.task == "generate":
            if self.latent_size is None or self.latent_size < 1:
                raise ExportError("--task generate needs --latent-size (the length of z)")
            if self.classes < 0 or (self.class_names and len(self.class_names) != self.classes):
                raise ExportError(
                    f"--class-names gives {len(self.class_names)} names for {self.classes} classes"
                )
            if self.scale is not None:
                raise ExportError("--scale is for --task upscale")
        else:
            if self.scale is None or not 1 <= self.scale <= 16:
                raise ExportError("--task upscale needs --scale, from 1 to 16")
            if self.latent_size is not None or self.classes:
                raise ExportError("--latent-size and --classes are for --task generate")

    def names(self) -> list[str]:
        return list(self.class_names) or [str(i) for i in range(self.classes)]

    def summary(self) -> dict[str, Any]:
        """For the manifest's source section."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if v is not None}


def parse_range(text: str, what: str) -> tuple[float, float]:
    """'0,1' or '-1,1' -> (low, high)."""
    parts = text.split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise ExportError(f"{what} must be LOW,HIGH (e.g. 0,1 or -1,1), got {text!r}") from None
    return low, high
