"""A style generator exports as two graphs, mapping.onnx and model.onnx (the synthesis), each
checked for parity, both verified by the repository, and described by the manifest's
generator.style: checked here independently of the exporter, at batch sizes it did not use."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from model_export.export import ExportResult, export_source
from model_export.source import load_source
from model_repository.latents import latents_from_seeds
from model_repository.manifest import ManifestError
from model_repository.repository import read_version
from model_repository.styles import StyleSpec
from training.models.style import StyleGenerator

ARCH = "style-conditional"


def _session(directory: Path, file: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(directory / file), providers=["CPUExecutionProvider"])


def _generator(path: Path) -> StyleGenerator:
    G = load_source(path).generator
    assert isinstance(G, StyleGenerator)
    return G


def test_manifest_describes_both_graphs(exported: dict[str, ExportResult]) -> None:
    result = exported[ARCH]
    m = read_version(result.directory.parent.parent, ARCH, 1)  # both files' sha256 checked
    assert m == result.manifest
    style = m["generator"]["style"]
    assert (style["w_dim"], style["num_ws"]) == (16, 6)
    assert style["layers"] == {"coarse": [0, 4], "middle": [4, 4], "fine": [4, 6]}
    assert [n["shape"] for n in style["noise"]] == [[1, 4, 4], [1, 8, 8], [1, 8, 8], [1, 16, 16], [1, 16, 16]]
    assert [n["name"] for n in style["noise"]] == [f"noise_{i}" for i in range(5)]
    assert np.asarray(style["w_avg"]).shape == (3, 16)
    assert style["mapping"]["file"]["name"] == "mapping.onnx"
    assert [i["name"] for i in style["mapping"]["inputs"]] == ["z", "labels"]
    assert style["mapping"]["outputs"] == [{"name": "w", "dtype": "float32", "shape": ["batch", 16]}]
    assert [i["name"] for i in m["inputs"]] == ["ws", *(f"noise_{i}" for i in range(5))]
    assert m["inputs"][0]["shape"] == ["batch", 6, 16]
    assert m["outputs"][0]["shape"] == ["batch", 16, 16, 3]
    graphs = [(c["graph"], c["input_shape"][0]) for c in m["parity"]["cases"]]
    assert graphs == [("model.onnx", n) for n in (1, 3, 17)] + [("mapping.onnx", n) for n in (1, 3, 17)]
    assert m["parity"]["max_abs_error"] <= 1e-4 and m["parity"]["pixel_max_diff"] <= 1
    card = (result.directory / "README.md").read_text()
    assert "Style-based" in card and "mapping.onnx" in card and "spec.truncate" in card


def test_w_avg_is_written_exactly(
    exported: dict[str, ExportResult], generator_files: dict[str, Path]
) -> None:
    spec = StyleSpec.from_manifest(exported[ARCH].manifest)
    assert np.array_equal(spec.w_avg, _generator(generator_files[ARCH]).w_avg.numpy())


@pytest.mark.parametrize("batch", [2, 5])
def test_mapping_and_synthesis_round_trip(
    batch: int, exported: dict[str, ExportResult], generator_files: dict[str, Path]
) -> None:
    directory = exported[ARCH].directory
    spec = StyleSpec.from_manifest(exported[ARCH].manifest)
    G = _generator(generator_files[ARCH])
    z = latents_from_seeds(list(range(batch)), 8)
    labels = np.arange(batch, dtype=np.int64) % 3
    w = _session(directory, "mapping.onnx").run(None, {"z": z, "labels": labels})[0]
    with torch.no_grad():
        expected_w = G.mapping(torch.from_numpy(z), torch.from_numpy(labels)).numpy()
    assert np.abs(w - expected_w).max() < 1e-4
    # the synthesis, on mixed and truncated styles and noise from seeds
    ws = spec.broadcast(spec.truncate(w, labels, 0.7))
    ws[:, 3:] = np.roll(ws[:, 3:], 1, axis=0)
    noise = spec.noise(list(range(10, 10 + batch)))
    feed = {"ws": ws, **dict(zip(spec.noise_names, noise, strict=True))}
    pixels = _session(directory, "model.onnx").run(None, feed)[0]
    with torch.no_grad():
        image = G.synthesis(torch.from_numpy(ws), [torch.from_numpy(n) for n in noise])
    expected = ((image + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert pixels.shape == (batch, 16, 16, 3) and pixels.dtype == np.uint8
    assert np.abs(pixels.astype(int) - expected.astype(int)).max() <= 1
    assert pixels.std() > 0


def test_fp16_style_export(generator_files: dict[str, Path], tmp_path: Path) -> None:
    result = export_source(load_source(generator_files[ARCH]), tmp_path, ARCH, precision="fp16", card=False)
    m = result.manifest
    assert m["precision"] == "fp16" and m["parity"]["max_abs_error"] <= m["parity"]["tolerance"] == 1e-2
    assert {c["graph"] for c in m["parity"]["cases"]} == {"model.onnx", "mapping.onnx"}
    for file in ("model.onnx", "mapping.onnx"):
        model = onnx.load(str(result.directory / file))
        weights = [t for t in model.graph.initializer if t.dims and len(t.dims) > 1]
        assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights), file
    # float32 in and out of the mapping; float32 in, uint8 out of the synthesis
    mapping, synthesis = _session(result.directory, "mapping.onnx"), _session(result.directory, "model.onnx")
    assert [i.type for i in mapping.get_inputs()] == ["tensor(float)", "tensor(int64)"]
    assert [o.type for o in mapping.get_outputs()] == ["tensor(float)"]
    assert {i.type for i in synthesis.get_inputs()} == {"tensor(float)"}
    assert [o.type for o in synthesis.get_outputs()] == ["tensor(uint8)"]


def test_a_changed_mapping_file_is_refused(exported: dict[str, ExportResult], tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(exported[ARCH].directory, repo / ARCH / "1")
    mapping = repo / ARCH / "1" / "mapping.onnx"
    data = bytearray(mapping.read_bytes())
    data[-10] ^= 0xFF
    mapping.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"mapping\.onnx: sha256 does not match"):
        read_version(repo, ARCH, 1)
    mapping.unlink()
    with pytest.raises(ManifestError, match=r"mapping\.onnx: missing"):
        read_version(repo, ARCH, 1)


def test_an_unconditional_style_generator_at_8_pixels(
    exported: dict[str, ExportResult], generator_files: dict[str, Path]
) -> None:
    result = exported["style-8px"]
    style = result.manifest["generator"]["style"]
    assert [i["name"] for i in style["mapping"]["inputs"]] == ["z"]
    assert np.asarray(style["w_avg"]).shape == (1, 8) and style["num_ws"] == 4
    assert style["layers"] == {"coarse": [0, 2], "middle": [2, 2], "fine": [2, 4]}
    spec = StyleSpec.from_manifest(result.manifest)
    z = latents_from_seeds([1, 2, 3], 4)
    w = _session(result.directory, "mapping.onnx").run(None, {"z": z})[0]
    ws = spec.broadcast(spec.truncate(w, None, 0.5))
    feed = {"ws": ws, **dict(zip(spec.noise_names, spec.noise([1, None, 3]), strict=True))}
    pixels = _session(result.directory, "model.onnx").run(None, feed)[0]
    G = _generator(generator_files["style-8px"])
    with torch.no_grad():
        truncated = G.truncate(G.mapping(torch.from_numpy(z), None), None, 0.5)
        image = G.synthesis(
            truncated[:, None].repeat(1, 4, 1), [torch.from_numpy(n) for n in feed.values()][1:]
        )
    expected = ((image + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert pixels.shape == (3, 8, 8, 1) and np.abs(pixels.astype(int) - expected.astype(int)).max() <= 1
