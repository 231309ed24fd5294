"""An fp16 graph beside a version's fp32 model.onnx: exported from PyTorch with --fp16-variant, or
converted from a published version's graph into the next version (`gan-export fp16-variant`).
Real exports, real ONNX Runtime, tiny generators (conftest)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from model_export.cli import main
from model_export.errors import ExportError
from model_export.export import ExportResult
from model_export.fp16_graph import interface_of, tapped, to_fp16
from model_export.pixel_graphs import graph_specs
from model_export.source import load_source
from model_export.variant import GRAPH_REFERENCE, add_fp16_variant, parity_feeds
from model_repository.manifest import FP16_FILE, dump_manifest, sha256_file, variant_file
from model_repository.repository import list_versions, read_version

MODELS = Path(__file__).resolve().parents[2] / "models"


def _session(path: Path) -> ort.InferenceSession:
    return _session_of(onnx.load(str(path)))


def _session_of(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # fp16 graphs on CPU log each Cast ONNX Runtime inserts
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _same_interface(directory: Path) -> None:
    """model.fp16.onnx takes and gives exactly what model.onnx does, and holds float16 weights."""
    fp32, fp16 = (onnx.load(str(directory / f)) for f in ("model.onnx", FP16_FILE))
    assert interface_of(fp16) == interface_of(fp32)
    sizes = {t: 0 for t in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)}
    for i in fp16.graph.initializer:  # the weights in fp16; a few float32 constants may remain
        sizes[i.data_type] = sizes.get(i.data_type, 0) + int(np.prod(i.dims))
    assert sizes[onnx.TensorProto.FLOAT16] > 10 * sizes[onnx.TensorProto.FLOAT]


def _check_variant(manifest: dict[str, Any], directory: Path, reference: str) -> dict[str, Any]:
    variant: dict[str, Any] = manifest["variants"]["fp16"]
    parity = variant["parity"]
    assert variant_file(manifest, "fp16") == FP16_FILE and parity["reference"] == reference
    assert 0 < parity["max_abs_error"] <= parity["tolerance"] == 0.01
    assert {c["graph"] for c in parity["cases"]} == {FP16_FILE}
    assert variant["file"]["sha256"] == sha256_file(directory / FP16_FILE)
    _same_interface(directory)
    card = (directory / "README.md").read_text()
    assert (
        f"| fp16 variant | `{FP16_FILE}`" in card and f"max abs error {parity['max_abs_error']:.2g}" in card
    )
    return variant


def test_export_with_fp16_variant(
    generator_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A style generator: the variant is its synthesis (model.onnx); mapping.onnx stays fp32.
    args = [str(generator_files["style-8px"]), "--repo", str(tmp_path), "--name", "g", "--fp16-variant"]
    assert main(args) == 0
    assert f"{FP16_FILE}, " in capsys.readouterr().out
    directory = tmp_path / "g" / "1"
    manifest = read_version(tmp_path, "g", 1)  # model.onnx, mapping.onnx and model.fp16.onnx verified
    assert manifest["precision"] == "fp32" and "derived_from" not in manifest
    _check_variant(manifest, directory, "PyTorch fp32 on CPU")
    mapping = onnx.load(str(directory / "mapping.onnx"))
    assert all(i.data_type != onnx.TensorProto.FLOAT16 for i in mapping.graph.initializer)
    # Fed exactly as model.onnx: float32 ws and noise in, uint8 pixels out, within the levels recorded.
    sessions = [_session(directory / f) for f in ("model.onnx", FP16_FILE)]
    feed = {i.name: np.random.default_rng(1).standard_normal((4, *i.shape[1:])).astype(np.float32)
            for i in sessions[0].get_inputs()}  # fmt: skip
    fp32, fp16 = (s.run(None, feed)[0] for s in sessions)
    assert fp16.dtype == np.uint8 and fp16.shape == fp32.shape == (4, 8, 8, 1)
    assert (
        np.abs(fp16.astype(int) - fp32).max() <= 2 * manifest["variants"]["fp16"]["parity"]["pixel_max_diff"]
    )


def test_fp16_variant_goes_with_fp32_only(
    generator_files: dict[str, Path], tmp_path: Path, capsys: Any
) -> None:
    args = [str(generator_files["dcgan-conditional"]), "--repo", str(tmp_path), "--name", "g"]
    assert main([*args, "--fp16-variant", "--precision", "fp16"]) == 2
    assert "--fp16-variant adds an fp16 model.fp16.onnx beside an fp32 model.onnx" in capsys.readouterr().err
    assert list_versions(tmp_path, "g") == []


def _published(name: str, repo: Path) -> Path:
    """A bundled model's version 1 as it was published, fp32 alone (its variant taken out), in
    `repo`: what `gan-export fp16-variant` starts from when the checkpoint is gone."""
    version = repo / name / "1"
    shutil.copytree(MODELS / name / "1", version)
    (version / FP16_FILE).unlink()
    manifest = json.loads((version / "manifest.json").read_text())
    del manifest["variants"]
    (version / "manifest.json").write_text(dump_manifest(manifest))
    return version


@pytest.mark.parametrize("name", ["digits-conditional", "srresnet-x2", "digits-style"])
def test_published_version_gets_its_variant_as_the_next(tmp_path: Path, name: str) -> None:
    v1 = _published(name, tmp_path)
    result = add_fp16_variant(tmp_path, name)
    assert result.version == 2 and list_versions(tmp_path, name) == [1, 2]
    new, old = read_version(tmp_path, name, 2), read_version(tmp_path, name, 1)
    assert new == result.manifest and "variants" not in old  # version 1 untouched
    assert new["derived_from"]["version"] == 1
    assert new["derived_from"]["manifest_sha256"] == sha256_file(v1 / "manifest.json")
    changed = {"version", "created_at", "variants", "derived_from"}
    assert {k: v for k, v in new.items() if k not in changed} == {
        k: v for k, v in old.items() if k not in changed
    }
    for graph in ("model.onnx", "mapping.onnx"):  # the graphs themselves, byte for byte
        assert (v1 / graph).is_file() == (result.directory / graph).is_file()
        if (v1 / graph).is_file():
            assert (v1 / graph).read_bytes() == (result.directory / graph).read_bytes()
    variant = _check_variant(new, result.directory, GRAPH_REFERENCE)
    bundled = read_version(MODELS, name, 1)["variants"]["fp16"]
    if bundled["parity"]["reference"] == GRAPH_REFERENCE:  # made by this very conversion (not re-exported)
        assert variant == bundled


def test_cli_and_what_cannot_get_a_variant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _published("digits", tmp_path)
    repo = ["--repo", str(tmp_path)]

    def refused(args: list[str], message: str) -> None:
        assert main(["fp16-variant", *repo, *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("gan-export: error: ") and message in err, err

    refused(["--name", "nothing"], "nothing: no published version in")
    refused(["--name", "digits", "--version", "7"], "has no version 7")
    # Over the tolerance: nothing is published.
    refused(["--name", "digits", "--tolerance", "1e-9"], "the fp16 variant: parity check failed")
    assert list_versions(tmp_path, "digits") == [1]
    assert main(["fp16-variant", *repo, "--name", "digits", "--no-card"]) == 0
    assert f"published {tmp_path / 'digits' / '2'}: version 1 with {FP16_FILE}" in capsys.readouterr().out
    assert not (tmp_path / "digits" / "2" / "README.md").exists()
    refused(["--name", "digits"], "version 2 already has an fp16 variant")
    refused(["--name", "digits", "--version", "1"], "version 1 is not the newest (2)")
    assert main(["check", *repo]) == 0
    assert "fp16 variant" in capsys.readouterr().out

    # A version whose main graph is fp16 already (its manifest says so).
    fp16 = _published("srgan-x4", tmp_path)
    manifest = json.loads((fp16 / "manifest.json").read_text())
    (fp16 / "manifest.json").write_text(json.dumps({**manifest, "precision": "fp16"}))
    refused(["--name", "srgan-x4"], "model.onnx is fp16 already")


@pytest.mark.parametrize("arch", ["dcgan-conditional", "srresnet-x2", "style-8px"])
def test_the_variant_is_measured_on_exports_parity_inputs(
    exported: dict[str, ExportResult], generator_files: dict[str, Path], arch: str
) -> None:
    result = exported[arch]
    feeds = parity_feeds(result.directory, result.manifest)
    spec = graph_specs(load_source(generator_files[arch]))[0]
    assert len(feeds) == len(spec.parity_inputs)
    for feed, case in zip(feeds, spec.parity_inputs, strict=True):
        assert list(feed) == spec.input_names
        for got, expected in zip(feed.values(), case, strict=True):
            # a style synthesis' ws come from mapping.onnx here, from PyTorch at export
            np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)


def test_conversion_keeps_float_outputs_and_refuses_what_it_cannot_convert() -> None:
    mapping = onnx.load(str(MODELS / "digits-style" / "1" / "mapping.onnx"))  # float32 w out
    converted = to_fp16(mapping)
    assert interface_of(converted) == interface_of(mapping)
    feed = {
        "z": torch.randn(5, 64, generator=torch.Generator().manual_seed(0)).numpy(),
        "labels": np.arange(5),
    }
    w32, w16 = (_session_of(m).run(None, feed)[0] for m in (mapping, converted))
    assert w16.dtype == np.float32 and np.abs(w16 - w32).max() < 1e-2
    with pytest.raises(ExportError, match="not a pixel graph as gan-export writes them: 0 Round"):
        tapped(mapping)
    looped = onnx.helper.make_model(
        onnx.helper.make_graph(
            [
                onnx.helper.make_node(
                    "If",
                    ["c"],
                    ["y"],
                    then_branch=onnx.helper.make_graph([], "t", [], []),
                    else_branch=onnx.helper.make_graph([], "e", [], []),
                )
            ],
            "g",
            [onnx.helper.make_tensor_value_info("c", onnx.TensorProto.BOOL, [])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
        )
    )
    with pytest.raises(ExportError, match="If has subgraphs"):
        to_fp16(looped)
