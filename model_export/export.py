"""A source -> a published model version, in five steps. gan-export (model_export.cli) runs 1 and 2:
1. check the arguments (`check_arguments`) before any slow work; 2. read the source (a checkpoint's
generator, EMA weights if present: model_export.source; a model made elsewhere: model_export.adopt).
`export_source` runs 3 to 5, after refusing an interface that differs from the newest published
version's (unless told): 3. export each published graph (model.onnx; a style G's mapping.onnx too)
as a float graph for the value check and the pixel graph, each checked by onnx.checker; 4. measure
parity against PyTorch; 5. write the graphs, manifest.json, sample.png and README.md into a staging
directory renamed to REPO/NAME/VERSION. fp16_variant adds model.fp16.onnx (variants.fp16) within
the fp16 tolerance; a version already published gets one from its fp32 graph: model_export.variant.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from model_export.card import write_card
from model_export.errors import ExportError
from model_export.fp16_graph import refuse_other_interface
from model_export.graph_spec import GraphSpec
from model_export.onnx_file import DEFAULT_OPSET, check_opset, export_graph
from model_export.onnx_wrap import compose, default_opset, graph_precision
from model_export.parity import TOLERANCES, ParityReport, measure_parity
from model_export.pixel_graphs import PRECISIONS, build_graph, graph_specs
from model_export.source import Source
from model_repository.interface import interface, refuse_interface_change
from model_repository.manifest import (
    FAMILY_ROLES,
    FP16_FILE,
    MANIFEST_FILE,
    MAPPING_FILE,
    MODEL_FILE,
    dump_manifest,
    sha256_file,
    validate_manifest,
)
from model_repository.repository import NAME_PATTERN, check_name, list_versions, publish_version


@dataclass
class ExportResult:
    name: str
    version: int
    directory: Path
    manifest: dict[str, Any]


def check_arguments(
    repo: Path,
    name: str,
    version: int | None,
    precision: str,
    opset: int,
    tolerance: float | None,
    replace: bool,
    fp16_variant: bool = False,
) -> float:
    """Step 1, before any slow work; the tolerance to use."""
    check_name(name)
    check_opset(opset)
    if precision not in PRECISIONS:
        raise ExportError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if fp16_variant and precision != "fp32":
        raise ExportError(
            f"--fp16-variant adds an fp16 {FP16_FILE} beside an fp32 {MODEL_FILE}: it goes with "
            f"--precision fp32 (the default), not {precision}"
        )
    tolerance = TOLERANCES[precision] if tolerance is None else tolerance
    if not tolerance > 0:
        raise ExportError(f"tolerance must be > 0, got {tolerance}")
    if version is not None and version in list_versions(repo, name) and not replace:
        raise ExportError(
            f"{name} version {version} already exists in {repo}; versions are immutable "
            "(leave --version out for the next number, or pass --replace)"
        )
    return tolerance


def export_source(
    source: Source,
    repo: Path,
    name: str,
    version: int | None = None,
    precision: str = "fp32",
    opset: int = DEFAULT_OPSET,
    tolerance: float | None = None,
    replace: bool = False,
    card: bool = True,
    family: str | None = None,
    family_role: str | None = None,
    new_interface: bool = False,
    fp16_variant: bool = False,
) -> ExportResult:
    """Steps 3 to 5 for a source: a checkpoint's, or a model made elsewhere (model_export.adopt).
    family: an upscaler's family (the models of one factor that /upscale's `detail` blends).
    new_interface: publish even if the interface differs from the newest published version's.
    fp16_variant: also publish model.onnx's graph at fp16 (model.fp16.onnx)."""
    family_section = upscaler_family(source, family, family_role)
    if source.raw_onnx is not None:
        if precision != "fp32":
            raise ExportError(
                f"a {source.format} is adopted at its own precision: --precision fp16 is not supported"
            )
        if fp16_variant:  # its graph is wrapped, not traced: there is no fp16 module to export
            raise ExportError(
                f"--fp16-variant: a {source.format} is adopted at its own precision; publish it, then "
                "`gan-export fp16-variant --repo REPO --name NAME` converts the published graph"
            )
        precision = graph_precision(source.raw_onnx)  # a float16 graph is published as it is
    tolerance = check_arguments(repo, name, version, precision, opset, tolerance, replace, fp16_variant)
    specs = graph_specs(source)  # model.onnx first; a style G also has mapping.onnx
    section = {**specs[0].task_section}
    if family_section is not None:
        section["family"] = family_section
    new = interface({"task": source.task, "generator" if source.task == "generate" else "upscaler": section})
    # Before the graphs are exported: a refused version costs no export and writes nothing.
    refuse_interface_change(repo, name, version, new, new_interface)

    with tempfile.TemporaryDirectory(prefix="gan-export-") as scratch:
        # 3. the graphs: for each, a float graph and (when it outputs pixels) the pixel graph
        # 4. parity against the fp32 PyTorch generator
        published: dict[str, Path] = {}
        reports: list[ParityReport] = []
        variant_report: ParityReport | None = None  # model.fp16.onnx's, with fp16_variant
        for spec in specs:
            float_path = Path(scratch) / f"float-{spec.file}"
            pixel_path = Path(scratch) / spec.file if spec.pixels else None
            if source.raw_onnx is not None:  # the user's own graph, wrapped in ONNX, at its opset
                wrapped = compose(source.raw_onnx, source.interface, False, spec.output_name)
                onnx.save(wrapped, float_path)
                opset = default_opset(wrapped)
                if pixel_path is not None:
                    onnx.save(compose(source.raw_onnx, source.interface, True, spec.output_name), pixel_path)
            else:
                export_graph(build_graph(source, spec, precision, pixels=False), spec, float_path, opset)
                if pixel_path is not None:
                    export_graph(build_graph(source, spec, precision, pixels=True), spec, pixel_path, opset)
            reference = build_graph(source, spec, "fp32", pixels=False)
            reports.append(measure_parity(reference, float_path, pixel_path, spec, tolerance))
            published[spec.file] = pixel_path or float_path
            if fp16_variant and spec.file == MODEL_FILE and pixel_path is not None:
                variant_report = export_fp16_variant(source, spec, pixel_path, Path(scratch), opset)
                published[FP16_FILE] = Path(scratch) / FP16_FILE
        report = ParityReport.combined(reports)

        # 5. publish
        manifests: list[dict[str, Any]] = []

        def write(staging: Path, number: int) -> None:
            # Again, against the repository as it is now: another export may have published since.
            refuse_interface_change(repo, name, number, new, new_interface)
            for file, path in published.items():
                shutil.copyfile(path, staging / file)
            built = build_manifest(
                source, specs[0], name, number, precision, opset, staging, report, tolerance
            )
            if family_section is not None:
                built["upscaler"]["family"] = family_section
            if variant_report is not None:
                parity = variant_report.manifest(TOLERANCES["fp16"], "fp16")
                built["variants"] = {"fp16": {"file": file_entry(staging / FP16_FILE), "parity": parity}}
            text = dump_manifest(built)
            manifest = json.loads(text)  # validate exactly what readers will read (tuples are lists)
            validate_manifest(manifest, "the new manifest")
            (staging / MANIFEST_FILE).write_text(text)
            if card:
                write_card(staging, manifest, str(repo))
            manifests.append(manifest)

        number, directory = publish_version(repo, name, write, version=version, replace=replace)
    return ExportResult(name=name, version=number, directory=directory, manifest=manifests[0])


def export_fp16_variant(
    source: Source, spec: GraphSpec, fp32_pixels: Path, scratch: Path, opset: int
) -> ParityReport:
    """Steps 3 and 4 for model.onnx's fp16 variant: scratch/model.fp16.onnx (and its float twin),
    checked, with fp32_pixels' inputs and outputs, within the fp16 tolerance of PyTorch fp32."""
    variant_spec = dataclasses.replace(spec, file=FP16_FILE)  # parity cases name this graph
    float_path, pixel_path = scratch / f"float-{FP16_FILE}", scratch / FP16_FILE
    export_graph(build_graph(source, spec, "fp16", pixels=False), spec, float_path, opset)
    export_graph(build_graph(source, spec, "fp16", pixels=True), spec, pixel_path, opset)
    refuse_other_interface(onnx.load(str(fp32_pixels)), onnx.load(str(pixel_path)))
    reference = build_graph(source, spec, "fp32", pixels=False)
    try:
        return measure_parity(reference, float_path, pixel_path, variant_spec, TOLERANCES["fp16"])
    except ExportError as e:
        raise ExportError(f"the fp16 variant: {e}") from None


def upscaler_family(source: Source, family: str | None, role: str | None) -> dict[str, str] | None:
    """The manifest's upscaler.family: the family's name and this model's role in it. The role
    defaults from training: an SRGAN stage is the family's detail model (sharper, invented
    texture), anything else its faithful one."""
    if family is None:
        if role is not None:
            raise ExportError("--family-role needs --family")
        return None
    if source.task != "upscale":
        raise ExportError(
            "--family is for upscalers: a family is the models of one factor that detail blends"
        )
    if not NAME_PATTERN.match(family):
        raise ExportError(
            f"family {family!r}: 1-64 characters, lowercase letters, digits, '.', '_', '-', starting "
            "with a letter or digit"
        )
    if role is None:
        role = "detail" if source.training.get("stage") == "srgan" else "faithful"
    if role not in FAMILY_ROLES:
        raise ExportError(f"family role must be one of {', '.join(FAMILY_ROLES)}, got {role!r}")
    return {"name": family, "role": role}


def build_manifest(
    source: Source,
    spec: GraphSpec,
    name: str,
    version: int,
    precision: str,
    opset: int,
    staging: Path,
    report: ParityReport,
    tolerance: float,
) -> dict[str, Any]:
    """spec: model.onnx's; staging: the directory holding the published graphs."""
    section = spec.task_section
    if "style" in section:  # the mapping graph's file, as written (the spec itself stays as it is)
        style = section["style"]
        mapping = {**style["mapping"], "file": file_entry(staging / MAPPING_FILE)}
        section = {**section, "style": {**style, "mapping": mapping}}
    manifest: dict[str, Any] = {
        "schema_version": 1,
        "name": name,
        "version": version,
        "task": source.task,
        "created_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "file": file_entry(staging / MODEL_FILE),
        "precision": precision,
        "opset": opset,
        "inputs": spec.manifest_inputs,
        "outputs": spec.manifest_outputs,
        "generator" if source.task == "generate" else "upscaler": section,
        "value_range": {"model": list(spec.model_value_range), "pixels": [0, 255]},
        "source": {
            "checkpoint": str(source.path),
            "sha256": source.sha256,
            "format": source.format,
            "step": source.step,
            "architecture": {"kind": source.kind, "config": source.config, "parameters": source.parameters},
            "weights": source.weights,
            "training": source.training,
            "data": source.data,
        },
        "metrics": source.metrics,
        "parity": report.manifest(tolerance, precision),
        "tools": tool_versions(),
    }
    return manifest


def file_entry(path: Path) -> dict[str, Any]:
    return {"name": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def tool_versions() -> dict[str, str]:
    def version_of(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "onnxscript": version_of("onnxscript"),
        "numpy": np.__version__,
        "gan_serving": version_of("gan-serving"),
    }
