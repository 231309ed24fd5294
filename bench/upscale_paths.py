"""Output sizes between the models' factors: which path is better, in PSNR and in time.

    python bench/upscale_paths.py [--out bench/results/upscale_paths.json]

For each factor f, every test photo (training/sr/photos/test, 480x360 or so) is reduced by 1/f
with MATLAB's antialiased bicubic (the degradation the upscalers are scored on), and brought back
to its own size by each path: bicubic alone (the baseline), the x2 model then a resize, the x4
model then a resize, each resize Lanczos (what the service uses) and bicubic. PSNR on the Y
channel with a 4-pixel border shaved, as docs/training.md scores upscalers; time per photo with
ONNX Runtime on one thread (the model on the whole photo, which the service's tiles equal) and
the resize, as the service runs it (service.images.output_size.resize). Runs in about a minute.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.images import output_size  # noqa: E402
from training.sr import metrics  # noqa: E402
from training.sr.data import TEST_PHOTOS  # noqa: E402
from training.sr.resize import imresize_uint8  # noqa: E402

FACTORS = (1.25, 1.5, 2.0, 2.5, 3.0, 3.75, 4.0)  # each divides 480x360 exactly
MODELS = {2: "srresnet-x2", 4: "srresnet-x4"}
FILTERS = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC}


def session(name: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(ROOT / "models" / name / "1" / "model.onnx"), options)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return metrics.psnr(metrics.shave(metrics.rgb_to_y(a), 4), metrics.shave(metrics.rgb_to_y(b), 4))


def resized(pixels: np.ndarray, w: int, h: int, resample: Image.Resampling) -> np.ndarray:
    saved = output_size.RESAMPLE
    output_size.RESAMPLE = resample  # the service's resize, with the filter under test
    try:
        factor = max(w / pixels.shape[1], h / pixels.shape[0])
        return output_size.resize(pixels, output_size.OutputSize(w, h, w, h, factor))
    finally:
        output_size.RESAMPLE = saved


def measure(photos: list[Path]) -> list[dict[str, Any]]:
    sessions = {scale: session(name) for scale, name in MODELS.items()}
    rows = []
    for factor in FACTORS:
        scores: dict[str, list[float]] = {}
        seconds: dict[str, float] = {}

        def add(path: str, out: np.ndarray, hr: np.ndarray, elapsed: float) -> None:
            scores.setdefault(path, []).append(psnr(out, hr))  # noqa: B023 (used within the loop)
            seconds[path] = seconds.get(path, 0.0) + elapsed  # noqa: B023

        for photo in photos:
            hr = np.asarray(Image.open(photo).convert("RGB"))
            h, w = hr.shape[:2]
            lr = imresize_uint8(hr, 1 / factor)
            for filter_name, resample in FILTERS.items():
                started = time.perf_counter()
                out = resized(lr, w, h, resample)
                add(f"bicubic alone ({filter_name})", out, hr, time.perf_counter() - started)
                for scale, model in sessions.items():
                    started = time.perf_counter()
                    up = model.run(None, {"image": lr[None]})[0][0]
                    out = resized(up, w, h, resample)
                    add(f"x{scale} + {filter_name}", out, hr, time.perf_counter() - started)
        for path, values in scores.items():
            rows.append(
                {
                    "factor": factor,
                    "path": path,
                    "psnr_db": round(float(np.mean(values)), 3),
                    "ms_per_photo": round(1000 * seconds[path] / len(photos), 1),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args()
    photos = sorted(TEST_PHOTOS.glob("*.png"))
    rows = measure(photos)
    paths = list(dict.fromkeys(r["path"] for r in rows))
    print(f"{len(photos)} test photos; PSNR (Y, dB) / ms per photo, one thread")
    print(f"{'factor':>7} " + " ".join(f"{p:>26}" for p in paths))
    for factor in FACTORS:
        cells = {r["path"]: r for r in rows if r["factor"] == factor}
        print(
            f"{factor:>7} "
            + " ".join(f"{cells[p]['psnr_db']:>15.2f} {cells[p]['ms_per_photo']:>7.0f} ms" for p in paths)
        )
    if args.out:
        args.out.write_text(json.dumps({"photos": len(photos), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
