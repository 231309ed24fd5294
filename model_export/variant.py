"""An fp16 variant for a version that is already published: its fp32 model.onnx converted to
float16 at the graph level (model_export.fp16_graph), published as the next version.

For models whose PyTorch generator is gone (the bundled models ship without their checkpoints);
with the checkpoint at hand, `gan-export CHECKPOINT --fp16-variant` exports the fp16 graph from
PyTorch instead. Published versions are immutable and a serving repository is watched, so the
variant is not added to version N: version N+1 is a copy of N's graphs plus model.fp16.onnx, its
manifest N's with `variants.fp16` and `derived_from` (N, N's manifest's sha256, what changed).

The fp16 graph is checked by onnx.checker, must take and give exactly the tensors model.onnx
does, and is held to the fp16 tolerance against model.onnx in ONNX Runtime (CPU) on the inputs
export's parity uses (for a style generator's synthesis, the ws of the published mapping.onnx);
over it, nothing is published.
"""

from __future__ import annotations

import copy
import datetime
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from model_export.card import write_card
from model_export.errors import ExportError
from model_export.export import ExportResult, file_entry
from model_export.fp16_graph import refuse_other_interface, to_fp16
from model_export.graph_spec import latent_cases
from model_export.parity import TOLERANCES, ParityReport, measure_graph_parity, session
from model_export.pixel_graphs import upscaler_cases
from model_export.style_graphs import synthesis_cases
from model_repository.manifest import (
    FP16_FILE,
    MANIFEST_FILE,
    MAPPING_FILE,
    MODEL_FILE,
    dump_manifest,
    graph_files,
    sha256_file,
    validate_manifest,
    variant_file,
)
from model_repository.repository import check_name, list_versions, publish_version, read_version, version_dir

# The parity record's reference: the graph this variant was converted from.
GRAPH_REFERENCE = f"{MODEL_FILE} (fp32) in ONNX Runtime on CPU"


def source_version(repo: Path, name: str, version: int | None) -> tuple[int, dict[str, Any]]:
    """The version to derive from (default: the newest) and its verified manifest, or ExportError
    saying why not, before any slow work."""
    check_name(name)
    versions = list_versions(repo, name)
    if not versions:
        raise ExportError(f"{name}: no published version in {repo}")
    number = versions[-1] if version is None else version
    if number not in versions:
        raise ExportError(f"{name} has no version {number} in {repo} (published: {versions})")
    if number != versions[-1]:
        # Its derived version would be the newest, which requests that name no version get:
        # older weights would quietly replace the newest ones.
        raise ExportError(
            f"{name} version {number} is not the newest ({versions[-1]}): its fp16 variant would be "
            f"published as version {versions[-1] + 1} and served in place of version {versions[-1]}; "
            f"derive it from version {versions[-1]}"
        )
    manifest = read_version(repo, name, number)  # every graph's size and sha256 verified
    if manifest["precision"] != "fp32":
        raise ExportError(
            f"{name} version {number}'s {MODEL_FILE} is {manifest['precision']} already; an fp16 variant "
            "goes beside an fp32 graph"
        )
    if variant_file(manifest, "fp16") is not None:
        raise ExportError(f"{name} version {number} already has an fp16 variant ({FP16_FILE})")
    return number, manifest


def parity_feeds(directory: Path, manifest: dict[str, Any]) -> list[dict[str, np.ndarray]]:
    """The inputs export measured model.onnx's parity on (pixel_graphs, style_graphs), rebuilt
    from the manifest, as ONNX Runtime feeds."""
    names = [str(i["name"]) for i in manifest["inputs"]]
    if manifest["task"] == "upscale":
        cases = upscaler_cases(manifest["upscaler"]["channels"])
    else:
        generator = manifest["generator"]
        rng = torch.Generator().manual_seed(0)
        cases = latent_cases(generator["latent_size"], generator["classes"]["count"], rng)
        style = generator.get("style")
        if style is not None:  # model.onnx is the synthesis: ws from the published mapping
            mapping = session(directory / MAPPING_FILE)
            map_names = [str(i["name"]) for i in style["mapping"]["inputs"]]

            def mapped(*case: torch.Tensor) -> torch.Tensor:
                feed = {n: t.numpy() for n, t in zip(map_names, case, strict=True)}
                return torch.from_numpy(np.asarray(mapping.run(None, feed)[0]))

            shapes = [n["shape"] for n in style["noise"]]
            cases = synthesis_cases(cases, mapped, style["num_ws"], shapes, rng)
    return [{n: t.numpy() for n, t in zip(names, case, strict=True)} for case in cases]


def convert_fp16(
    directory: Path, manifest: dict[str, Any], out: Path, tolerance: float | None = None
) -> dict[str, Any]:
    """Write `directory`'s model.onnx converted to fp16 to `out` (checked, same interface, parity
    within the tolerance) and return its manifest entry ({"file": ..., "parity": ...})."""
    tolerance = TOLERANCES["fp16"] if tolerance is None else tolerance
    if not tolerance > 0:
        raise ExportError(f"tolerance must be > 0, got {tolerance}")
    reference = onnx.load(str(directory / MODEL_FILE))
    converted = to_fp16(reference)
    refuse_other_interface(reference, converted)
    onnx.save(converted, str(out))
    low, high = manifest["value_range"]["model"]
    with tempfile.TemporaryDirectory(prefix="gan-export-fp16-") as scratch:
        try:
            report: ParityReport = measure_graph_parity(
                directory / MODEL_FILE,
                out,
                parity_feeds(directory, manifest),
                (low, high),
                tolerance,
                Path(scratch),
            )
        except ExportError as e:
            raise ExportError(f"the fp16 variant: {e}") from None
    return {"file": file_entry(out), "parity": report.manifest(tolerance, "fp16", GRAPH_REFERENCE)}


def add_fp16_variant(
    repo: Path, name: str, version: int | None = None, tolerance: float | None = None, card: bool = True
) -> ExportResult:
    """Publish NAME's version N (default: the newest) with an fp16 variant as version N+1."""
    number, manifest = source_version(repo, name, version)
    directory = version_dir(repo, name, number)
    manifest_sha256 = sha256_file(directory / MANIFEST_FILE)
    with tempfile.TemporaryDirectory(prefix="gan-export-") as scratch:
        variant_path = Path(scratch) / FP16_FILE
        variant = convert_fp16(directory, manifest, variant_path, tolerance)
        written: list[dict[str, Any]] = []

        def write(staging: Path, new_number: int) -> None:
            # The version's graphs, byte for byte; the card is made anew for the new version.
            for entry in graph_files(manifest):
                shutil.copyfile(directory / entry["name"], staging / entry["name"])
            shutil.copyfile(variant_path, staging / FP16_FILE)
            derived = copy.deepcopy(manifest)
            derived["version"] = new_number
            derived["created_at"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            derived["variants"] = {"fp16": {**variant, "file": file_entry(staging / FP16_FILE)}}
            derived["derived_from"] = {
                "version": number,
                "manifest_sha256": manifest_sha256,
                "change": f"added the fp16 variant {FP16_FILE}, {MODEL_FILE} converted to float16",
            }
            text = dump_manifest(derived)
            validate_manifest(json.loads(text), "the new manifest")
            (staging / MANIFEST_FILE).write_text(text)
            if card:
                write_card(staging, json.loads(text), str(repo))
            written.append(json.loads(text))

        # N+1 exactly: had another export published it meanwhile, this one is refused rather than
        # published further on.
        new_number, target = publish_version(repo, name, write, version=number + 1)
    return ExportResult(name=name, version=new_number, directory=target, manifest=written[0])
