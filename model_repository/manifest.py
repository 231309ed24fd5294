"""manifest.json: its JSON schema, validation, reading and the model file's checksum.

Export validates a manifest before it publishes a version; the service validates it again (and the
checksum of model.onnx) before it loads one. Imports neither torch nor onnx: the service uses it.
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
    """Read and validate `version_dir/manifest.json`; with verify_file, also check that model.onnx
    exists with the recorded size and sha256 (a truncated or swapped file is refused)."""
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
    """The version's ONNX files ({name, sha256, bytes}): model.onnx, and a style generator's
    mapping.onnx."""
    files = [manifest["file"]]
    style = manifest.get("generator", {}).get("style")
    if style is not None:
        files.append(style["mapping"]["file"])
    return files


def dump_manifest(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=False) + "\n"
