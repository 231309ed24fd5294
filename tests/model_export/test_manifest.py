"""The manifest schema, enforced when export writes a manifest and whenever a reader loads one."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from model_export.export import ExportResult
from model_repository.manifest import (
    ManifestError,
    manifest_schema,
    read_manifest,
    schema_errors,
    validate_manifest,
)
from model_repository.repository import read_version

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def manifest(exported: dict[str, ExportResult]) -> dict[str, Any]:
    return copy.deepcopy(exported["dcgan-conditional"].manifest)


def test_exported_manifests_are_valid(exported: dict[str, ExportResult]) -> None:
    for result in exported.values():
        assert schema_errors(result.manifest) == []
        on_disk = json.loads((result.directory / "manifest.json").read_text())
        assert on_disk == result.manifest


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("parity"), "(top level): 'parity' is a required property"),
        (lambda m: m.update(task="classify"), "task: 'classify' is not one of"),
        (lambda m: m.update(name="../etc"), "name: '../etc' does not match"),
        (lambda m: m.update(version=0), "version: 0 is less than the minimum of 1"),
        (lambda m: m["file"].update(sha256="abc"), "file/sha256: 'abc' does not match"),
        (lambda m: m.update(surprise=1), "Additional properties are not allowed ('surprise' was unexpected)"),
        (lambda m: m.update(precision="int8"), "precision: 'int8' is not one of ['fp32', 'fp16']"),
        (lambda m: m["inputs"][0].update(dtype="float64"), "inputs/0/dtype: 'float64' is not one of"),
        (lambda m: m["generator"]["classes"].update(count=-1), "generator/classes/count: -1 is less than"),
        (lambda m: m["parity"].update(max_abs_error=-0.5), "parity/max_abs_error: -0.5 is less than"),
        (lambda m: m.pop("generator"), "'generator' is a required property"),  # task generate needs it
        (lambda m: m.update(upscaler=m.pop("generator")), "upscaler"),  # a generator cannot be an upscaler
        (lambda m: m["metrics"].update(fd=[1, 2]), "metrics/fd: [1, 2] is not of type 'number', 'string'"),
    ],
)
def test_schema_violations_are_named(manifest: dict[str, Any], change: Any, message: str) -> None:
    change(manifest)
    errors = schema_errors(manifest)
    assert errors and any(message in e for e in errors), errors
    with pytest.raises(ManifestError, match="does not match the manifest schema"):
        validate_manifest(manifest)


def test_schema_is_valid_draft_2020_12() -> None:
    schema = manifest_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    assert set(schema["required"]) >= {"name", "version", "task", "file", "parity", "source", "tools"}


def test_reader_checks_the_model_file(exported: dict[str, ExportResult], tmp_path: Path) -> None:
    version = tmp_path / "dcgan-conditional" / "1"
    shutil.copytree(exported["dcgan-conditional"].directory, version)
    assert read_manifest(version)["name"] == "dcgan-conditional"
    assert read_version(tmp_path, "dcgan-conditional", 1)["version"] == 1

    model = version / "model.onnx"
    data = model.read_bytes()
    model.write_bytes(data[:-10])
    with pytest.raises(ManifestError, match=r"bytes, the manifest says"):
        read_manifest(version)
    model.write_bytes(data[:-10] + b"0123456789")  # same size, different bytes
    with pytest.raises(ManifestError, match="sha256 does not match"):
        read_manifest(version)
    model.unlink()
    with pytest.raises(ManifestError, match=r"model\.onnx: missing"):
        read_manifest(version)
    assert read_manifest(version, verify_file=False)["version"] == 1

    (version / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not readable JSON"):
        read_manifest(version)
    (version / "manifest.json").unlink()
    with pytest.raises(ManifestError, match=r"manifest\.json: missing"):
        read_manifest(version)


def test_manifest_must_describe_its_own_directory(exported: dict[str, ExportResult], tmp_path: Path) -> None:
    # A version copied to another name or number is refused: the manifest says what it is.
    shutil.copytree(exported["srresnet-x2"].directory, tmp_path / "other" / "7")
    with pytest.raises(ManifestError, match="describes srresnet-x2 version 1"):
        read_version(tmp_path, "other", 7)
