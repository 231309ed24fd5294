"""Uploaded image bytes -> RGB pixels (+ alpha) for an upscaler, with every limit checked before
the pixels are decoded; and the upscaled pixels back to the input's own colour mode."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from service.errors import InvalidRequest, PayloadTooLarge
from service.media import UPLOAD_FORMATS

# PIL's names of the upload formats.
FORMAT_NAMES = {fmt.upper(): fmt for fmt in UPLOAD_FORMATS}

# The pixel limit is ours (checked from the header, before decoding); PIL's own bomb check would
# only warn below twice its limit.
Image.MAX_IMAGE_PIXELS = None


@dataclass
class DecodedImage:
    rgb: np.ndarray  # (h, w, 3) uint8
    alpha: np.ndarray | None  # (h, w) uint8, when the input had transparency
    gray: bool  # the input was grayscale: the output is too
    source_format: str  # png | jpeg | webp


def decode_image(data: bytes, max_pixels: int) -> DecodedImage:
    """Runs on a worker thread. Raises InvalidRequest (corrupt or unsupported image) or
    PayloadTooLarge (more than max_pixels, judged from the header alone)."""
    if not data:
        raise InvalidRequest("the body is empty; send the image bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
    except Exception:  # PIL raises many types for garbage; its messages name internal objects
        raise InvalidRequest("not a readable image: the data is not PNG, JPEG or WebP") from None
    if image.format not in FORMAT_NAMES:
        raise InvalidRequest(f"the data is {image.format or 'of an unknown format'}, not PNG, JPEG or WebP")
    source_format = FORMAT_NAMES[image.format]
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidRequest(f"the image is empty ({width}x{height})")
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"the image is {width}x{height} = {width * height} pixels; this server takes at most {max_pixels}"
        )
    if getattr(image, "n_frames", 1) > 1:
        raise InvalidRequest("animated images are not supported; send a single frame")
    try:
        image.load()
        upright: Image.Image = ImageOps.exif_transpose(image) or image
    except Exception as e:
        raise InvalidRequest(f"the image data is corrupt or truncated: {e}") from None
    return _to_pixels(upright, source_format)


def _to_pixels(image: Image.Image, source_format: str) -> DecodedImage:
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit gray: scale to 8 bits (PIL's convert("L") would clip at 255)
        wide = np.asarray(image, dtype=np.float64)
        top = 65535.0 if wide.max() > 255 else 255.0
        image = Image.fromarray(np.clip(wide / top * 255 + 0.5, 0, 255).astype(np.uint8), "L")
    elif mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image) * 255 + 0.5, 0, 255).astype(np.uint8), "L")
    mode = image.mode
    gray = mode in ("1", "L", "LA", "La")
    alpha = None
    if mode in ("LA", "La", "RGBA", "RGBa", "PA"):
        alpha = np.asarray(image.getchannel("A"), dtype=np.uint8)
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return DecodedImage(np.ascontiguousarray(rgb), alpha, gray, source_format)


def upscale_alpha(alpha: np.ndarray, scale: int) -> np.ndarray:
    """Transparency is not the model's business: bicubic, beside the RGB the model upscales."""
    h, w = alpha.shape
    resized = Image.fromarray(alpha, "L").resize((w * scale, h * scale), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.uint8)


def compose(rgb: np.ndarray, alpha: np.ndarray | None, gray: bool) -> np.ndarray:
    """(H, W, 3) uint8 [+ (H, W) alpha] -> (H, W, C) in the input's colour mode: C = 1, 2 is not
    encodable everywhere, so gray + alpha goes out as RGBA; 3 for colour; 4 with alpha."""
    if alpha is not None:
        return np.concatenate([rgb, alpha[:, :, None]], axis=2)
    if gray:
        return np.asarray(Image.fromarray(rgb, "RGB").convert("L"), dtype=np.uint8)[:, :, None]
    return rgb
