"""manifest.json: its JSON schema, validation, reading and the model files' checksums.

Export validates a manifest before it publishes a version; the service validates it again (and the
size and sha256 of each graph it lists: model.onnx, a style generator's mapping.onnx, an fp16
variant's model.fp16.onnx) before it loads one. A version's variants are other graphs of the same
model with the same inputs and outputs (`variants.fp16`: model.onnx in float16, for GPUs), each
with its own file entry and parity record; `variant_file` says which file a reader may load
instead of model.onnx. Imports neither torch nor onnx: the service uses it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
MAPPING_FILE = "mapping.onnx"  # a style generator's second graph
FP16_FILE = "model.fp16.onnx"  # model.onnx in float16 (manifest: variants.fp16), same inputs and outputs
# A variant's name -> its file (the schema fixes each name's file).
VARIANT_FILES = {"fp16": FP16_FILE}
# An upscaler's role in its family (upscaler.family): /upscale's detail blends the two.
FAMILY_ROLES = ("faithful", "detail")


class ManifestError(ValueError):
    """A manifest that is unreadable, breaks the schema, or does not match its model file."""


@functools.cache
def manifest_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def schema_errors(manifest: Any) -> list[str]:
    """Every schema violation as 'path: message', sorted; [] when the manifest is valid."""
    validator = jsonschema.Draft202012Validator(manifest_schema())
    found = []
    for error in validator.iter_errors(manifest):
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        found.append(f"{where}: {error.message}")
    return sorted(found)


def validate_manifest(manifest: Any, source: str = "manifest") -> None:
    errors = schema_errors(manifest)
    if errors:
        raise ManifestError(f"{source} does not match the manifest schema:\n  " + "\n  ".join(errors))


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(version_dir: Path, verify_file: bool = True) -> dict[str, Any]:
    """Read and validate `version_dir/manifest.json`; with verify_file, also check that each graph
    it lists (graph_files) exists with the recorded size and sha256 (a truncated or swapped file is
    refused)."""
    path = version_dir / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path}: not readable JSON ({e})") from None
    validate_manifest(manifest, str(path))
    if verify_file:
        for entry in graph_files(manifest):
            model = version_dir / entry["name"]
            if not model.is_file():
                raise ManifestError(f"{model}: missing")
            size = model.stat().st_size
            if size != entry["bytes"]:
                raise ManifestError(f"{model}: {size} bytes, the manifest says {entry['bytes']}")
            if sha256_file(model) != entry["sha256"]:
                raise ManifestError(f"{model}: sha256 does not match the manifest")
    return manifest


def graph_files(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The version's ONNX files ({name, sha256, bytes}): model.onnx, a style generator's
    mapping.onnx, and each variant's graph (model.fp16.onnx)."""
    files = [manifest["file"]]
    style = manifest.get("generator", {}).get("style")
    if style is not None:
        files.append(style["mapping"]["file"])
    files += [variant["file"] for variant in manifest.get("variants", {}).values()]
    return files


def variant_file(manifest: dict[str, Any], variant: str) -> str | None:
    """The file name of the version's `variant` graph ("fp16": model.fp16.onnx), None when the
    manifest lists none. Takes the same inputs and gives the same outputs as model.onnx; a reader
    that verified the manifest (read_manifest) has verified this file too."""
    if variant not in VARIANT_FILES:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANT_FILES)}")
    entry = manifest.get("variants", {}).get(variant)
    return None if entry is None else str(entry["file"]["name"])


def dump_manifest(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=False) + "\n"
