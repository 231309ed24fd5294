"""A version's fp16 variant in the manifest: the schema's contract, and a reader that verifies
model.fp16.onnx as it verifies model.onnx (a bundled model, which has one, is the example)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from model_repository.manifest import (
    FP16_FILE,
    ManifestError,
    graph_files,
    read_manifest,
    schema_errors,
    variant_file,
)
from model_repository.repository import read_version

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture
def manifest() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((MODELS / "digits" / "1" / "manifest.json").read_text())
    return loaded


def test_the_contract(manifest: dict[str, Any]) -> None:
    assert schema_errors(manifest) == []
    variant = manifest["variants"]["fp16"]
    assert set(variant) == {"file", "parity"} and variant["file"]["name"] == FP16_FILE == "model.fp16.onnx"
    assert set(variant["parity"]) == set(manifest["parity"])  # the same record as the main graph's
    assert variant_file(manifest, "fp16") == FP16_FILE
    assert [f["name"] for f in graph_files(manifest)] == ["model.onnx", FP16_FILE]
    without = copy.deepcopy(manifest)
    del without["variants"]  # a manifest from before variants is still valid, and has none
    assert schema_errors(without) == [] and variant_file(without, "fp16") is None
    with pytest.raises(ValueError, match="unknown variant 'int8'"):
        variant_file(manifest, "int8")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda v: v["fp16"]["file"].update(name="model.onnx"),
            "variants/fp16/file/name: 'model.fp16.onnx' was expected",
        ),
        (lambda v: v["fp16"]["file"].update(sha256="abc"), "variants/fp16/file/sha256: 'abc' does not match"),
        (lambda v: v["fp16"]["file"].update(bytes=0), "variants/fp16/file/bytes: 0 is less than the minimum"),
        (lambda v: v["fp16"].pop("parity"), "variants/fp16: 'parity' is a required property"),
        (lambda v: v["fp16"]["parity"].pop("tolerance"), "'tolerance' is a required property"),
        (lambda v: v["fp16"]["parity"]["cases"][0].update(graph="../x.onnx"), "does not match"),
        (lambda v: v.update(int8=v["fp16"]), "('int8' was unexpected)"),
        (lambda v: v.pop("fp16"), "variants: {} should be non-empty"),
    ],
)
def test_schema_refuses_a_bad_variant(manifest: dict[str, Any], change: Any, message: str) -> None:
    change(manifest["variants"])
    errors = schema_errors(manifest)
    assert any(message in e for e in errors), errors


def test_schema_refuses_an_fp16_variant_of_an_fp16_graph_and_a_bad_derivation(
    manifest: dict[str, Any],
) -> None:
    fp16 = {**manifest, "precision": "fp16"}
    assert schema_errors(fp16) and schema_errors({k: v for k, v in fp16.items() if k != "variants"}) == []
    derived = {**manifest, "derived_from": {"version": 1, "manifest_sha256": "0" * 64, "change": "added"}}
    assert schema_errors(derived) == []
    derived["derived_from"] = {"version": 0, "manifest_sha256": "x", "change": ""}
    assert len(schema_errors(derived)) == 3


def test_reader_verifies_the_fp16_file(tmp_path: Path) -> None:
    version = tmp_path / "digits" / "1"
    shutil.copytree(MODELS / "digits" / "1", version)
    assert read_version(tmp_path, "digits", 1)["variants"]["fp16"]["file"]["name"] == FP16_FILE
    fp16 = version / FP16_FILE
    data = fp16.read_bytes()
    fp16.write_bytes(data[:-10])  # truncated
    with pytest.raises(ManifestError, match=r"model\.fp16\.onnx: \d+ bytes, the manifest says"):
        read_version(tmp_path, "digits", 1)
    fp16.write_bytes(data[:-10] + b"0123456789")  # same size, other bytes
    with pytest.raises(ManifestError, match=r"model\.fp16\.onnx: sha256 does not match"):
        read_version(tmp_path, "digits", 1)
    shutil.copyfile(version / "model.onnx", fp16)  # swapped for the fp32 graph
    with pytest.raises(ManifestError, match=r"model\.fp16\.onnx: \d+ bytes, the manifest says"):
        read_manifest(version)
    fp16.unlink()
    with pytest.raises(ManifestError, match=r"model\.fp16\.onnx: missing"):
        read_manifest(version)
    assert read_manifest(version, verify_file=False)["version"] == 1
