"""The bundled default models in models/: valid, verified, small, documented, and they work.

Run through ONNX Runtime exactly as published (no PyTorch): the conditional digits generator must
draw the digits it is asked for, and the upscalers must beat bicubic on a test photo. Each has an
fp16 variant (model.fp16.onnx), converted from its fp32 graph (their checkpoints are not in the
repository): the same interface, half the size, within the fp16 tolerance.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from model_export.fp16_graph import interface_of
from model_repository.latents import latents_from_seeds
from model_repository.repository import list_models, list_versions, read_version
from model_repository.styles import StyleSpec
from training.sr.data import TEST_PHOTOS

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
BUNDLED = {
    "digits-conditional": "generate",
    "digits": "generate",
    "digits-style": "generate",
    "srresnet-x2": "upscale",
    "srresnet-x4": "upscale",
    "srgan-x4": "upscale",
}


def _session(name: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(MODELS / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"])


def test_every_bundled_model_is_valid_and_verified() -> None:
    assert list_models(MODELS) == sorted(BUNDLED)
    for name, task in BUNDLED.items():
        assert list_versions(MODELS, name) == [1]
        m = read_version(MODELS, name, 1)  # schema, file size and sha256
        assert m["task"] == task and m["precision"] == "fp32"
        assert m["parity"]["max_abs_error"] <= m["parity"]["tolerance"] == 1e-4
        assert m["parity"]["pixel_max_diff"] <= 1
        assert m["source"]["format"] == "generator file" and m["source"]["weights"] == "ema"
        for extra in ("README.md", "sample.png"):
            assert (MODELS / name / "1" / extra).is_file()
    total = sum(p.stat().st_size for p in MODELS.rglob("*") if p.is_file())
    assert total < 25e6


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_every_bundled_model_has_its_fp16_variant(name: str) -> None:
    m = read_version(MODELS, name, 1)  # model.fp16.onnx's size and sha256 verified too
    variant = m["variants"]["fp16"]
    parity = variant["parity"]
    assert variant["file"]["name"] == "model.fp16.onnx"
    # Converted from model.onnx (the checkpoints are not in the repository), or exported from
    # PyTorch by `make models` with the runs at hand.
    assert parity["reference"] in ("model.onnx (fp32) in ONNX Runtime on CPU", "PyTorch fp32 on CPU")
    assert parity["max_abs_error"] <= parity["tolerance"] == 1e-2 and parity["pixel_max_diff"] <= 1
    # measured on the inputs export measured model.onnx on
    shapes = [c["input_shape"] for c in m["parity"]["cases"] if c.get("graph", "model.onnx") == "model.onnx"]
    assert [c["input_shape"] for c in parity["cases"]] == shapes
    assert variant["file"]["bytes"] < 0.6 * m["file"]["bytes"]  # half-size weights
    fp32, fp16 = (onnx.load(str(MODELS / name / "1" / f)) for f in ("model.onnx", "model.fp16.onnx"))
    assert interface_of(fp16) == interface_of(fp32)
    assert "| fp16 variant | `model.fp16.onnx`" in (MODELS / name / "1" / "README.md").read_text()


def test_fp16_variant_draws_what_the_fp32_graph_draws() -> None:
    labels = np.arange(10, dtype=np.int64)
    feed = {"z": latents_from_seeds(list(range(10)), 64), "labels": labels}
    options = ort.SessionOptions()
    options.log_severity_level = 3  # ONNX Runtime on CPU logs each Cast it puts around fp16 nodes
    fp16 = ort.InferenceSession(
        str(MODELS / "digits-conditional" / "1" / "model.fp16.onnx"),
        options,
        providers=["CPUExecutionProvider"],
    )
    images, expected = fp16.run(None, feed)[0], _session("digits-conditional").run(None, feed)[0]
    assert images.dtype == np.uint8 and images.shape == expected.shape == (10, 32, 32, 1)
    assert np.abs(images.astype(int) - expected).max() <= 1


def test_style_model_manifest_and_its_quality() -> None:
    style = read_version(MODELS, "digits-style", 1)  # model.onnx and mapping.onnx verified
    conditional = read_version(MODELS, "digits-conditional", 1)
    assert style["source"]["architecture"]["kind"] == "style"
    assert style["generator"]["style"]["num_ws"] == 8 and style["generator"]["style"]["w_dim"] == 128
    assert {c["graph"] for c in style["parity"]["cases"]} == {"model.onnx", "mapping.onnx"}
    assert style["generator"]["classes"] == conditional["generator"]["classes"]
    # psi 0: one image per label, whatever the seed (noise aside: the images differ only there)
    labels = np.array([3, 3, 3, 5], dtype=np.int64)
    mean = _style_images(labels, psi=0.0).astype(np.float64)
    assert np.abs(mean[0] - mean[1]).mean() < 0.5 * np.abs(mean[0] - mean[3]).mean()


@pytest.mark.parametrize("name", ["digits-conditional", "digits-style"])
def test_conditional_generators_meet_the_quality_goals(name: str) -> None:
    m = read_version(MODELS, name, 1)["metrics"]
    # Recall at least 0.8 of the real-vs-real baseline at matched sizes; no memorisation (fewer
    # samples near a training image than new real data has); the asked-for class drawn.
    assert m["matched_size"] == 179 and m["recall"] >= 0.8 * m["recall_real_baseline"]
    assert m["memorised_share"] < m["memorised_share_baseline"] and m["nn_distance_ratio"] > 0.9
    assert m["accuracy"] > 0.98 and m["accuracy_ci95_low"] <= m["accuracy"] <= m["accuracy_ci95_high"]
    assert 0.9 < m["cas"] <= m["classifier_heldout_accuracy"]
    if name == "digits-conditional":  # CAS within 5 points of real data's (the style G: 6.1 under)
        assert m["classifier_heldout_accuracy"] - m["cas"] <= 0.05
    card = (MODELS / name / "1" / "README.md").read_text()
    assert "| Classification Accuracy Score |" in card and "| memorisation |" in card


def test_metrics_come_from_the_real_runs() -> None:
    conditional = read_version(MODELS, "digits-conditional", 1)
    assert conditional["generator"]["classes"] == {"count": 10, "names": [str(d) for d in range(10)]}
    assert conditional["metrics"]["accuracy"] > 0.95 and conditional["metrics"]["step"] == 3000
    assert read_version(MODELS, "digits", 1)["generator"]["classes"]["count"] == 0
    for name in ("srresnet-x2", "srresnet-x4", "srgan-x4"):
        m = read_version(MODELS, name, 1)
        # Validation and test figures kept apart, each set named; the test set is the 12 photos.
        photos = [f"photos/{n}.png" for n in ("freshflower", "garden", "greenmeadow", "raindrops")]
        assert m["source"]["data"]["validation_images"] == ["camera", "chelsea", "coffee", *photos]
        assert len(m["source"]["data"]["test_images"]) == m["metrics"]["test_images"] == 12
        assert m["metrics"]["validation_images"] == 7
        assert m["metrics"]["validation_set"].startswith("scikit-image chelsea, coffee, camera and photo")
        assert m["metrics"]["test_set"].startswith("12 photographs of training/sr/photos/test")
        assert m["metrics"]["test_niqe_hr"] < m["metrics"]["test_niqe_bicubic"]  # bicubic blurs
        card = (MODELS / name / "1" / "README.md").read_text()
        assert "| test: PSNR-Y |" in card and "| validation: NIQE (lower is more natural) |" in card
        # The x2 recipe's colour augmentation is named where the card says how it was trained.
        assert ("colour_augment 0.5 |" in card) == (name == "srresnet-x2")
        assert m["source"]["training"]["colour_augment"] == (0.5 if name == "srresnet-x2" else 0)
    # The stage-1 models gain on both sets over MATLAB's bicubic, by the goals on the test
    # set (x2 +1.5 dB, x4 +0.8 dB); SRGAN trades PSNR for naturalness: a lower NIQE than the
    # stage-1 model it started from.
    x2, x4, srgan = (
        read_version(MODELS, n, 1)["metrics"] for n in ("srresnet-x2", "srresnet-x4", "srgan-x4")
    )
    assert x2["test_psnr_gain_db"] >= 1.5 and x2["validation_psnr_gain_db"] > 1.5
    assert x4["test_psnr_gain_db"] >= 0.8 and x4["validation_psnr_gain_db"] > 1.0
    assert srgan["test_niqe"] < x4["test_niqe"] - 1 and srgan["validation_niqe"] < x4["validation_niqe"] - 1


def test_docs_list_the_bundled_models() -> None:
    docs = (REPO / "docs" / "export.md").read_text()
    for name in BUNDLED:
        assert f"| `{name}` |" in docs  # a row of the bundled-models table


def _style_images(labels: np.ndarray, psi: float = 1.0) -> np.ndarray:
    """digits-style's images of seeds 0.. with these labels, as the service makes them."""
    spec = StyleSpec.from_manifest(read_version(MODELS, "digits-style", 1))
    seeds = list(range(len(labels)))
    mapping = ort.InferenceSession(str(MODELS / "digits-style" / "1" / "mapping.onnx"))
    w = mapping.run(None, {"z": latents_from_seeds(seeds, 64), "labels": labels})[0]
    ws = spec.broadcast(spec.truncate(w, labels, psi))
    noise = dict(zip(spec.noise_names, spec.noise(list(seeds)), strict=True))
    return np.asarray(_session("digits-style").run(None, {"ws": ws, **noise})[0])


@pytest.mark.parametrize("name", ["digits-conditional", "digits-style"])
def test_conditional_generator_draws_the_asked_digit(name: str) -> None:
    # A plain classifier on scikit-learn's 8x8 digits judges the generated 32x32 digits, shrunk
    # back to 8x8 and 0..16: the labels must reach the network through the ONNX graph.
    digits = load_digits()
    classifier = LogisticRegression(max_iter=2000).fit(digits.data, digits.target)
    labels = np.repeat(np.arange(10, dtype=np.int64), 20)
    if name == "digits-style":
        images = _style_images(labels)
    else:
        z = latents_from_seeds(list(range(len(labels))), 64)
        images = _session(name).run(None, {"z": z, "labels": labels})[0]  # (200, 32, 32, 1)
    assert images.shape == (200, 32, 32, 1) and images.dtype == np.uint8
    small = images[..., 0].reshape(200, 8, 4, 8, 4).mean(axis=(2, 4)) / 255 * 16
    accuracy = (classifier.predict(small.reshape(200, 64)) == labels).mean()
    assert accuracy > 0.85, accuracy


def test_unconditional_generator_varies_with_the_seed() -> None:
    sess = _session("digits")
    assert [i.name for i in sess.get_inputs()] == ["z"]
    images = sess.run(None, {"z": latents_from_seeds(list(range(16)), 64)})[0]
    assert images.shape == (16, 32, 32, 1)
    assert len({img.tobytes() for img in images}) == 16
    again = sess.run(None, {"z": latents_from_seeds([3], 64)})[0]
    assert np.array_equal(again[0], images[3])  # same seed, same bytes, whatever the batch


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * math.log10(255**2 / mse)


@pytest.mark.parametrize(("name", "scale", "min_gain"), [("srresnet-x2", 2, 0.5), ("srresnet-x4", 4, 0.3)])
def test_upscalers_beat_bicubic_on_a_test_photo(name: str, scale: int, min_gain: float) -> None:
    # A whole test photo (no recipe choice saw it), cut to an odd low-resolution size.
    with Image.open(TEST_PHOTOS / "fig.png") as photo:
        w, h = (479 // scale) | 1, (359 // scale) | 1
        hr = photo.convert("RGB").crop((0, 0, w * scale, h * scale))
    lr = hr.resize((w, h), Image.Resampling.BICUBIC, reducing_gap=None)
    out = _session(name).run(None, {"image": np.asarray(lr)[None]})[0][0]
    assert out.shape == (h * scale, w * scale, 3) and out.dtype == np.uint8
    bicubic = np.asarray(lr.resize(hr.size, Image.Resampling.BICUBIC))
    target = np.asarray(hr)
    b = 2 * scale  # border pixels depend on padding conventions: leave them out of the score
    gain = _psnr(out[b:-b, b:-b], target[b:-b, b:-b]) - _psnr(bicubic[b:-b, b:-b], target[b:-b, b:-b])
    assert gain > min_gain, gain


@pytest.mark.parametrize("name", ["srresnet-x2", "srresnet-x4"])
def test_upscalers_keep_flat_colours_flat(name: str) -> None:
    # 64 flat 56x56 images of dark, light and saturated colours (each channel 0, 26, 230 or 255):
    # a fidelity model must return them flat. Scored on the centre 8x8 LR pixels, 24 from every
    # edge, beyond the models' receptive radius (22-23), so padding plays no part. The x2 model
    # trained without colour augmentation drew rows 12 levels off there on a flat (26, 255, 0)
    # green (8 colours over 3 levels); the bundled ones stay within 2.
    colours = np.array(list(itertools.product((0, 26, 230, 255), repeat=3)), np.uint8)  # (64, 3)
    lr = np.ascontiguousarray(np.broadcast_to(colours[:, None, None, :], (64, 56, 56, 3)))
    out = _session(name).run(None, {"image": lr})[0]
    s = out.shape[1] // 56
    inner = out[:, 24 * s : 32 * s, 24 * s : 32 * s].astype(int)
    worst = np.abs(inner - colours[:, None, None, :].astype(int)).max(axis=(1, 2, 3))
    assert worst.max() <= 3, (colours[worst.argmax()], worst.max())
