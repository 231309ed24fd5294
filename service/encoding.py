"""uint8 pixel arrays <-> image file bytes. Runs on the encode thread pool, never on the event loop."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

FORMATS = ("png", "jpeg", "webp", "npy")
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "npy": "application/x-npy"}
FORMAT_OF_MEDIA_TYPE = {v: k for k, v in MEDIA_TYPES.items()}
JPEG_QUALITY = 95
WEBP_QUALITY = 95


def encode_image(pixels: np.ndarray, fmt: str) -> bytes:
    """(H, W, C) uint8, C in 1, 3, 4 -> file bytes. PNG and npy are lossless; npy keeps (H, W, C)."""
    if fmt == "npy":
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(pixels), allow_pickle=False)
        return buffer.getvalue()
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, format="PNG", compress_level=1)  # fast; PNG stays lossless at any level
    elif fmt == "jpeg":
        image.convert("RGB" if image.mode == "RGBA" else image.mode).save(
            buffer, format="JPEG", quality=JPEG_QUALITY
        )
    elif fmt == "webp":
        image.save(buffer, format="WEBP", quality=WEBP_QUALITY)
    else:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    return buffer.getvalue()
