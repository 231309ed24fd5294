"""Export of every architecture round-trips through ONNX Runtime: checked here independently of
the exporter's own parity step, at batch sizes and image sizes the exporter did not use."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from model_export.errors import ExportError
from model_export.export import ExportResult, check_arguments, export_source
from model_export.graph_spec import to_pixels
from model_export.source import load_source
from model_repository.latents import latents_from_seeds
from model_repository.repository import read_version
from tests.model_export.conftest import ARCHITECTURES, write_generator_file


def _torch_pixels(path: Path, *inputs: torch.Tensor) -> np.ndarray:
    """What PyTorch computes for these inputs, as uint8 NHWC pixels, from the generator file."""
    source = load_source(path)
    with torch.no_grad():
        if source.task == "upscale":
            x = inputs[0].permute(0, 3, 1, 2).float() / 255
            return to_pixels(source.generator(x), 0.0, 1.0).numpy()
        return to_pixels(source.generator(*inputs), -1.0, 1.0).numpy()


def _run(result: ExportResult, feed: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(str(result.directory / "model.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(None, feed)[0]


@pytest.mark.parametrize("arch", [a for a in ARCHITECTURES if a.split("-")[0] in ("mlp", "dcgan")])
@pytest.mark.parametrize("batch", [1, 2, 5, 33])
def test_generator_round_trip(
    arch: str, batch: int, exported: dict[str, ExportResult], generator_files: dict[str, Path]
) -> None:
    result = exported[arch]
    section = result.manifest["generator"]
    z = latents_from_seeds(list(range(100, 100 + batch)), section["latent_size"])
    feed = {"z": z}
    inputs = [torch.from_numpy(z)]
    if section["classes"]["count"]:
        labels = np.arange(batch, dtype=np.int64) % section["classes"]["count"]
        feed["labels"] = labels
        inputs.append(torch.from_numpy(labels))
    got = _run(result, feed)
    out = section["output"]
    assert got.dtype == np.uint8
    assert got.shape == (batch, out["height"], out["width"], out["channels"])
    expected = _torch_pixels(generator_files[arch], *inputs)
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert diff.max() <= 1  # a value on a rounding boundary may land one level away
    assert (diff > 0).mean() < 0.01
    assert got.std() > 0  # random weights still give varied pixels, not a constant


@pytest.mark.parametrize("arch", ["srresnet-x2", "srresnet-x4"])
@pytest.mark.parametrize("shape", [(1, 13, 7), (4, 5, 29), (2, 1, 2), (1, 40, 33)])
def test_upscaler_round_trip(
    arch: str,
    shape: tuple[int, int, int],
    exported: dict[str, ExportResult],
    generator_files: dict[str, Path],
) -> None:
    result = exported[arch]
    scale = result.manifest["upscaler"]["scale"]
    n, h, w = shape
    image = np.random.default_rng(sum(shape)).integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    got = _run(result, {"image": image})
    assert got.dtype == np.uint8 and got.shape == (n, h * scale, w * scale, 3)
    expected = _torch_pixels(generator_files[arch], torch.from_numpy(image))
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert diff.max() <= 1
    assert (diff > 0).mean() < 0.01


def test_manifest_records_what_was_exported(
    exported: dict[str, ExportResult], generator_files: dict[str, Path]
) -> None:
    result = exported["dcgan-conditional"]
    m = read_version(result.directory.parent.parent, "dcgan-conditional", 1)
    assert m == result.manifest
    assert m["task"] == "generate" and m["precision"] == "fp32" and m["opset"] == 18
    assert [i["name"] for i in m["inputs"]] == ["z", "labels"]
    assert m["generator"]["classes"] == {"count": 4, "names": ["0", "1", "2", "3"]}
    assert m["generator"]["latent_size"] == 8
    assert m["source"]["checkpoint"] == str(generator_files["dcgan-conditional"])
    assert m["source"]["architecture"]["config"]["upsample"] == "nearest"
    assert m["source"]["weights"] == "ema"
    assert m["metrics"] == {"step": 10, "fd": 12.5}
    assert 0 <= m["parity"]["max_abs_error"] <= m["parity"]["tolerance"] == 1e-4
    assert [c["input_shape"][0] for c in m["parity"]["cases"]] == [1, 3, 17]
    assert {"torch", "onnx", "onnxruntime", "python"} <= set(m["tools"])

    sr = exported["srresnet-x4"].manifest
    assert sr["task"] == "upscale" and "generator" not in sr
    assert sr["upscaler"]["scale"] == 4 and sr["outputs"][0]["shape"] == ["batch", "height*4", "width*4", 3]
    assert [1, 1, 1, 3] in [c["input_shape"] for c in sr["parity"]["cases"]]  # a 1x1 image too
    assert exported["dcgan-transposed"].manifest["generator"]["classes"] == {"count": 0, "names": []}
    assert exported["mlp-conditional"].manifest["generator"]["classes"]["names"] == ["cat", "dog", "owl"]


def test_model_card_and_sample(exported: dict[str, ExportResult]) -> None:
    gen = exported["dcgan-conditional"].directory
    card = (gen / "README.md").read_text()
    assert card.startswith("# dcgan-conditional v1")
    assert "![sample](sample.png)" in card and "max abs error" in card and "Rows: classes 0, 1, 2, 3" in card
    with Image.open(gen / "sample.png") as sample:
        # 4 classes x 8 seeds of 8x8 images with 2 px gaps, enlarged
        assert sample.width > sample.height > 0 and sample.mode == "RGB"
    sr = exported["srresnet-x2"].directory
    assert "x2 super-resolution" in (sr / "README.md").read_text()
    with Image.open(sr / "sample.png") as sample:
        assert sample.size == (2 * (3 * 128 + 2 * 2), 2 * 128)


def test_fp16_export(generator_files: dict[str, Path], tmp_path: Path) -> None:
    for arch in ("dcgan-conditional", "srresnet-x2"):
        result = export_source(
            load_source(generator_files[arch]), tmp_path, arch, precision="fp16", card=False
        )
        m = result.manifest
        assert m["precision"] == "fp16" and m["parity"]["tolerance"] == 1e-2
        assert m["parity"]["max_abs_error"] <= 1e-2
        model = onnx.load(str(result.directory / "model.onnx"))
        weights = [t for t in model.graph.initializer if t.name.startswith("generator.")]
        assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
        # The interface is unchanged: float32 z / uint8 pixels in, uint8 pixels out.
        sess = ort.InferenceSession(str(result.directory / "model.onnx"), providers=["CPUExecutionProvider"])
        assert sess.get_inputs()[0].type in ("tensor(float)", "tensor(uint8)")
        assert [o.type for o in sess.get_outputs()] == ["tensor(uint8)"]
        assert not (result.directory / "README.md").exists()


@pytest.mark.parametrize("opset", [17, 21])
def test_other_opsets(opset: int, generator_files: dict[str, Path], tmp_path: Path) -> None:
    result = export_source(
        load_source(generator_files["srresnet-x2"]), tmp_path, "sr", opset=opset, card=False
    )
    model = onnx.load(str(result.directory / "model.onnx"))
    assert next(o.version for o in model.opset_import if o.domain == "") == opset
    assert result.manifest["opset"] == opset


def test_bad_arguments_fail_before_any_work(generator_files: dict[str, Path], tmp_path: Path) -> None:
    # gan-export checks its arguments before it reads the source; export_source checks them again.
    fine = {"version": None, "precision": "fp32", "opset": 17, "tolerance": None, "replace": False}
    source = load_source(generator_files["dcgan-transposed"])
    for bad, message in (
        ({"opset": 11}, "opset must be between 17"),
        ({"precision": "int8"}, "precision must be one of fp32, fp16"),
        ({"tolerance": 0.0}, "tolerance must be > 0"),
    ):
        with pytest.raises(ExportError, match=message):
            check_arguments(tmp_path, "m", **(fine | bad))
        with pytest.raises(ExportError, match=message):
            export_source(source, tmp_path, "m", **(fine | bad))
    assert not any(tmp_path.iterdir())


def test_parity_failure_publishes_nothing(generator_files: dict[str, Path], tmp_path: Path) -> None:
    # fp16 weights cannot meet an fp32-tight tolerance: the export is refused, nothing appears.
    with pytest.raises(ExportError, match=r"parity check failed: .* \(tolerance 1e-07\)"):
        export_source(
            load_source(generator_files["srresnet-x2"]), tmp_path, "sr", precision="fp16", tolerance=1e-7
        )
    assert not (tmp_path / "sr").exists() or not any((tmp_path / "sr").iterdir())


def test_toy_point_generator_is_refused(tmp_path: Path) -> None:
    from training.models import build_generator, save_generator_file

    g = build_generator("mlp", {"latent_dim": 4, "out_shape": [2]})
    path = tmp_path / "ring.pt"
    data = {"name": "ring8", "kind": "toy", "value_range": None}
    save_generator_file(path, g, "mlp", False, data, {"task": "generate"}, {})
    with pytest.raises(ExportError, match=r"makes \(2,\) tensors, not \(1\|3, H, W\) images"):
        export_source(load_source(path), tmp_path / "repo", "ring")


def test_raw_weights_without_ema(tmp_path: Path) -> None:
    path = write_generator_file(tmp_path / "g.pt", "dcgan-transposed", ema=False)
    result = export_source(load_source(path), tmp_path / "repo", "g", card=False)
    assert result.manifest["source"]["weights"] == "raw"
    assert json.loads((result.directory / "manifest.json").read_text())["version"] == 1
