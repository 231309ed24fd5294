"""The model card: README.md beside model.onnx, written from the manifest, with a sample image made
by running the published ONNX model itself (what you see is what the service will serve)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from model_export.quality import quality_markdown
from model_repository.latents import latents_from_seeds
from model_repository.manifest import MAPPING_FILE, MODEL_FILE
from model_repository.styles import StyleSpec

SAMPLE_FILE = "sample.png"
GRID_COLUMNS = 8
MAX_ROWS = 10
GAP = 2  # pixels between grid cells
SR_CROP = 128  # high-resolution side of the upscaler sample crop (an eye of the cat)


def write_card(directory: Path, manifest: dict[str, Any], repo_hint: str) -> None:
    """Write sample.png and README.md into `directory` (a version directory, usually staging).
    repo_hint: how the card's code example should refer to the model file."""
    sess = ort.InferenceSession(str(directory / MODEL_FILE), providers=["CPUExecutionProvider"])
    if manifest["task"] == "generate":
        image, caption = _generator_sample(directory, sess, manifest)
    else:
        image, caption = _upscaler_sample(sess, manifest)
    image.save(directory / SAMPLE_FILE, optimize=True)
    (directory / "README.md").write_text(card_markdown(manifest, caption, repo_hint))


def generate_from_seeds(
    directory: Path, sess: ort.InferenceSession, manifest: dict[str, Any], seeds: list[int], labels: Any
) -> np.ndarray:
    """(len(seeds), H, W, C) uint8, as the service makes them with default settings (a style
    generator: no truncation, each image's noise from its own seed)."""
    section = manifest["generator"]
    feed: dict[str, np.ndarray] = {"z": latents_from_seeds(seeds, section["latent_size"])}
    if labels is not None:
        feed["labels"] = labels
    if "style" in section:
        spec = StyleSpec.from_manifest(manifest)
        mapping = ort.InferenceSession(str(directory / MAPPING_FILE), providers=["CPUExecutionProvider"])
        w = mapping.run(None, feed)[0]  # (N, w_dim)
        feed = {"ws": spec.broadcast(w), **dict(zip(spec.noise_names, spec.noise(list(seeds)), strict=True))}
    return np.asarray(sess.run(None, feed)[0])


def _generator_sample(
    directory: Path, sess: ort.InferenceSession, manifest: dict[str, Any]
) -> tuple[Image.Image, str]:
    section = manifest["generator"]
    classes = section["classes"]
    columns = GRID_COLUMNS
    if classes["count"]:
        rows = min(classes["count"], MAX_ROWS)
        labels = np.repeat(np.arange(rows, dtype=np.int64), columns)
        seeds = [int(s) for s in np.tile(np.arange(columns), rows)]
        shown = ", ".join(classes["names"][:rows])
        caption = f"Rows: classes {shown}; columns: seeds 0-{columns - 1}."
    else:
        rows = columns
        labels = None
        seeds = list(range(rows * columns))
        caption = f"Seeds 0-{rows * columns - 1}, row by row."
    images = generate_from_seeds(directory, sess, manifest, seeds, labels)  # (rows*columns, H, W, C)
    grid = _grid(images, rows, columns)
    zoom = max(1, 512 // (columns * images.shape[2]))  # small images: enlarge, pixels kept sharp
    return _to_pil(grid).resize(
        (grid.shape[1] * zoom, grid.shape[0] * zoom), Image.Resampling.NEAREST
    ), caption


def _upscaler_sample(sess: ort.InferenceSession, manifest: dict[str, Any]) -> tuple[Image.Image, str]:
    import skimage.data  # bundled with scikit-image (the train extra): no download

    section = manifest["upscaler"]
    scale, channels = section["scale"], section["channels"]
    photo = Image.fromarray(skimage.data.chelsea())  # 451x300, held out from sr_skimage training
    side = SR_CROP // scale * scale  # a whole number of low-resolution pixels (x3: 126)
    hr = photo.crop((120, 40, 120 + side, 40 + side)).convert("RGB" if channels == 3 else "L")
    lr = hr.resize((side // scale, side // scale), Image.Resampling.BICUBIC, reducing_gap=None)
    lr_array = np.asarray(lr, dtype=np.uint8).reshape(1, lr.height, lr.width, channels)
    model_out = _to_pil(sess.run(None, {"image": lr_array})[0][0])
    bicubic = lr.resize((side, side), Image.Resampling.BICUBIC)
    panels = [np.asarray(p).reshape(side, side, channels) for p in (bicubic, model_out, hr)]
    strip = _grid(np.stack(panels), 1, 3)
    zoom = 2
    caption = (
        f"A {side // scale}x{side // scale} crop of scikit-image's chelsea, upscaled x{scale}: "
        "bicubic | this model | the original (shown at 2x)."
    )
    return _to_pil(strip).resize(
        (strip.shape[1] * zoom, strip.shape[0] * zoom), Image.Resampling.NEAREST
    ), caption


def _grid(images: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """(rows*columns, H, W, C) uint8 -> one (rows*(H+GAP)-GAP, columns*(W+GAP)-GAP, C) image."""
    n, h, w, c = images.shape
    out = np.full((rows * (h + GAP) - GAP, columns * (w + GAP) - GAP, c), 255, dtype=np.uint8)
    for i in range(min(n, rows * columns)):
        r, col = divmod(i, columns)
        out[r * (h + GAP) : r * (h + GAP) + h, col * (w + GAP) : col * (w + GAP) + w] = images[i]
    return out


def _to_pil(array: np.ndarray) -> Image.Image:
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def _ranges(layers: dict[str, list[int]]) -> str:
    return ", ".join(f"{group} {start}-{stop - 1}" for group, (start, stop) in layers.items() if stop > start)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _io(tensors: list[dict[str, Any]]) -> str:
    return ", ".join(f"`{t['name']}` {t['dtype']} ({', '.join(str(d) for d in t['shape'])})" for t in tensors)


def _variant_rows(m: dict[str, Any]) -> list[str]:
    """The fp16 variant's row, when the version has one: its file and its own parity."""
    variant = m.get("variants", {}).get("fp16")
    if variant is None:
        return []
    file, parity = variant["file"], variant["parity"]
    derived = m.get("derived_from")
    note = f", made from version {derived['version']}'s {MODEL_FILE}" if derived else ""
    return [
        f"| fp16 variant | `{file['name']}`, {file['bytes'] / 1e6:.2f} MB: float16 inside, the same inputs "
        f"and outputs (for GPUs){note}; max abs error {parity['max_abs_error']:.2g} vs "
        f"{parity['reference']} (tolerance {parity['tolerance']:.2g}); uint8 output within "
        f"{parity['pixel_max_diff']} level(s), "
        f"{100 * parity['pixel_mismatch_fraction']:.3f} % of pixels differ |"
    ]


def card_markdown(manifest: dict[str, Any], caption: str, repo_hint: str) -> str:
    m = manifest
    src, arch, training = m["source"], m["source"]["architecture"], m["source"]["training"]
    parity = m["parity"]
    if m["task"] == "generate":
        classes = m["generator"]["classes"]
        what = (
            f"Class-conditional image generator ({classes['count']} classes: {', '.join(classes['names'])})"
            if classes["count"]
            else "Unconditional image generator"
        )
        out = m["generator"]["output"]
        what += f", {out['height']}x{out['width']}, {out['channels']} channel(s)."
        if "style" in m["generator"]:
            style = m["generator"]["style"]
            what += (
                f" Style-based (StyleGAN2-like): `{MAPPING_FILE}` maps z to a style w ({style['w_dim']} "
                f"values), `{MODEL_FILE}` draws the image from {style['num_ws']} per-layer styles and "
                f"{len(style['noise'])} noise images; layers {_ranges(style['layers'])}."
            )
    else:
        up = m["upscaler"]
        what = (
            f"x{up['scale']} super-resolution, any input size; the service tiles large images "
            f"({up['tile']} px tiles, {up['overlap']} px overlap)."
        )
        if "family" in up:
            family = up["family"]
            what += (
                f" Family `{family['name']}`, as its {family['role']} model: /upscale's `detail` blends "
                "the family's faithful model (0) and its detail model (1)."
            )
    trained = ", ".join(
        f"{k} {_fmt(training[k])}"
        for k in ("model", "stage", "loss", "steps", "data", "batch_size", "seed")
        if k in training
    )
    # An upscaler's augmentation and degradations, where its recipe used them.
    trained += "".join(
        f", {k} {_fmt(training[k])}"
        for k in ("colour_augment", "degrade_blur", "degrade_noise", "degrade_jpeg")
        if training.get(k)
    )
    model_path = f"{repo_hint}/{m['name']}/{m['version']}/{MODEL_FILE}"
    lines = [
        f"# {m['name']} v{m['version']}",
        "",
        what,
        "",
        f"![sample]({SAMPLE_FILE})",
        "",
        f"*{caption}*",
        "",
        "| | |",
        "|---|---|",
        f"| inputs | {_io(m['inputs'])} |",
        f"| output | {_io(m['outputs'])}, pixels 0-255 |",
        f"| architecture | {arch['kind']}, {arch['parameters']:,} parameters, {src['weights']} weights |",
        f"| training | {trained} |",
        f"| parity | max abs error {parity['max_abs_error']:.2g} vs PyTorch "
        f"(tolerance {parity['tolerance']:.2g}); "
        f"uint8 output within {parity['pixel_max_diff']} level(s), "
        f"{100 * parity['pixel_mismatch_fraction']:.3f} % of pixels differ |",
        f"| file | `{MODEL_FILE}`, {m['file']['bytes'] / 1e6:.2f} MB, {m['precision']}, opset {m['opset']}, "
        f"sha256 `{m['file']['sha256'][:16]}…` |",
        *_variant_rows(m),
        f"| source | `{src['checkpoint']}` ({src['format']}, sha256 `{src['sha256'][:16]}…`) |",
        f"| exported | {m['created_at']} with torch {m['tools']['torch']}, onnx {m['tools']['onnx']} |",
        "",
        "## Quality",
        "",
        *quality_markdown(m),
        "",
        "Every recorded figure is in `manifest.json` under `metrics`.",
        "",
        "## Run it with ONNX Runtime",
        "",
        "```python",
        "import numpy as np, onnxruntime as ort",
    ]
    if m["task"] == "generate" and "style" in m["generator"]:
        style = m["generator"]["style"]
        version_dir = f"{repo_hint}/{m['name']}/{m['version']}"
        classes = m["generator"]["classes"]
        lines += [
            "import json",
            "from model_repository.latents import latents_from_seeds",
            "from model_repository.styles import StyleSpec",
            "",  # the imports end, as ruff format writes it
            f'spec = StyleSpec.from_manifest(json.load(open("{version_dir}/manifest.json")))',
            f'mapping = ort.InferenceSession("{version_dir}/{MAPPING_FILE}")',
            f'synthesis = ort.InferenceSession("{model_path}")',
            f'feed = {{"z": latents_from_seeds([0, 1, 2], {m["generator"]["latent_size"]})}}  # seeds 0-2',
        ]
        if classes["count"]:
            lines.append('feed["labels"] = labels = np.array([0, 0, 0], dtype=np.int64)  # class per image')
        labels_arg = "labels" if classes["count"] else "None"
        out = m["generator"]["output"]
        lines += [
            f"w = mapping.run(None, feed)[0]  # (3, {style['w_dim']})",
            f"w = spec.truncate(w, {labels_arg}, psi=0.7)  # toward the mean style (1: no truncation)",
            f"ws = spec.broadcast(w)  # (3, {style['num_ws']}, {style['w_dim']}): one w per layer",
            "noise = dict(zip(spec.noise_names, spec.noise([0, 1, 2])))  # None per image: no noise",
            f'images = synthesis.run(None, {{"ws": ws, **noise}})[0]  # (3, {out["height"]}, '
            f"{out['width']}, {out['channels']}) uint8",
        ]
    elif m["task"] == "generate":
        classes = m["generator"]["classes"]
        lines += [
            "from model_repository.latents import latents_from_seeds",
            "",
            f'sess = ort.InferenceSession("{model_path}")',
            f'feed = {{"z": latents_from_seeds([0, 1, 2], {m["generator"]["latent_size"]})}}  # seeds 0-2',
        ]
        if classes["count"]:
            lines.append('feed["labels"] = np.array([0, 0, 0], dtype=np.int64)  # class index per image')
        out = m["generator"]["output"]
        shape = f"(3, {out['height']}, {out['width']}, {out['channels']})"
        lines.append(f"images = sess.run(None, feed)[0]  # {shape} uint8")
    else:
        up = m["upscaler"]
        mode, pick = ("RGB", "") if up["channels"] == 3 else ("L", "[..., None]")
        out_pick = "y[0]" if up["channels"] == 3 else "y[0, :, :, 0]"
        lines += [
            "from PIL import Image",
            "",
            f'sess = ort.InferenceSession("{model_path}")',
            f'x = np.asarray(Image.open("in.png").convert("{mode}"))[None]{pick}  # (1, h, w, C) uint8',
            f'y = sess.run(None, {{"image": x}})[0]  # (1, h*{up["scale"]}, w*{up["scale"]}, C) uint8',
            f'Image.fromarray({out_pick}).save("out.png")',
        ]
    lines += ["```", ""]
    return "\n".join(lines)
