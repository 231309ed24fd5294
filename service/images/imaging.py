"""Uploaded image bytes -> RGB pixels (+ alpha) for an upscaler, with every limit checked before
the pixels are decoded; and the upscaled pixels back to the input's own colour mode."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from contract.errors import InvalidRequest, PayloadTooLarge
from contract.media import UPLOAD_FORMATS
from service.images.metadata import ImageMetadata, read_metadata
from service.images.png16 import is_png16, read_png16, to_8_bits

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
    metadata: ImageMetadata = field(default_factory=ImageMetadata)
    # A 16-bit PNG's own values (rgb and alpha above are them rounded to 8 bits, for the model):
    wide_rgb: np.ndarray | None = None  # (h, w, 3) uint16
    wide_alpha: np.ndarray | None = None  # (h, w) uint16


@dataclass
class OpenedImage:
    """An upload whose header has been read and checked, its pixels not yet decoded."""

    image: Image.Image
    source_format: str  # png | jpeg | webp
    width: int  # upright: after its EXIF orientation
    height: int
    orientation: int  # EXIF's, 1 to 8 (1: stored upright)
    wide: bytes | None = None  # a 16-bit PNG's file, decoded by service.images.png16 (Pillow keeps 8 bits)


# EXIF orientations that swap width and height (transposed, and rotated by 90 or 270 degrees).
TRANSPOSING = (5, 6, 7, 8)
ORIENTATION = 0x0112


def open_image(data: bytes, max_pixels: int) -> OpenedImage:
    """Reads the header only (cheap enough for the event loop: no pixel is decoded). Raises
    InvalidRequest (corrupt or unsupported image) or PayloadTooLarge (more than max_pixels,
    judged from the header alone)."""
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
    orientation = exif_orientation(image.info.get("exif"))
    if orientation in TRANSPOSING:
        width, height = height, width
    # 16-bit PNGs are read by service.images.png16, except interlaced ones (Pillow reads those, at 8 bits)
    wide = data if source_format == "png" and is_png16(data) and data[28] == 0 else None
    return OpenedImage(image, source_format, width, height, orientation, wide)


def exif_orientation(raw: bytes | None) -> int:
    """The orientation in an EXIF block as the file's header gave it (Pillow's getexif() would
    decode a PNG's pixels to look for more); 1 for none, or a corrupt or impossible one."""
    if not raw:
        return 1
    try:
        exif = Image.Exif()
        exif.load(raw)
        orientation = int(exif.get(ORIENTATION, 1))
    except Exception:  # a corrupt EXIF block: the image is taken as it is stored
        return 1
    return orientation if orientation in range(1, 9) else 1


def decode(opened: OpenedImage) -> DecodedImage:
    """Runs on a worker thread: the pixels, upright (the orientation open_image read, so the size
    the path was chosen for is the size decoded), and the file's metadata."""
    image = opened.image
    if opened.wide is not None:  # Pillow decodes nothing: the metadata is in the chunks it read
        return _wide_pixels(opened, read_metadata(image))
    try:
        image.load()
    except Exception as e:
        raise InvalidRequest(f"the image data is corrupt or truncated: {e}") from None
    decoded = _to_pixels(image, opened.source_format)
    decoded.metadata = read_metadata(image)  # after the load: chunks after a PNG's pixels count too
    decoded.rgb = np.ascontiguousarray(orient(decoded.rgb, opened.orientation))
    if decoded.alpha is not None:
        decoded.alpha = np.ascontiguousarray(orient(decoded.alpha, opened.orientation))
    return decoded


def _wide_pixels(opened: OpenedImage, metadata: ImageMetadata) -> DecodedImage:
    """A 16-bit PNG: its own values (wide_*), and the same rounded to 8 bits for the model."""
    assert opened.wide is not None
    values = orient(read_png16(opened.wide, opened.width * opened.height), opened.orientation)
    channels = values.shape[2]  # 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA
    colour = values[:, :, :3] if channels >= 3 else np.repeat(values[:, :, :1], 3, axis=2)
    alpha = values[:, :, -1] if channels in (2, 4) else None
    return DecodedImage(
        np.ascontiguousarray(to_8_bits(colour)),
        None if alpha is None else np.ascontiguousarray(to_8_bits(alpha)),
        channels < 3,
        opened.source_format,
        metadata,
        np.ascontiguousarray(colour),
        None if alpha is None else np.ascontiguousarray(alpha),
    )


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W[, C]) as stored -> upright, for EXIF orientation 1-8 (as Pillow's exif_transpose):
    the one mapping, for 8-bit and 16-bit pixels alike. A view: copy it where it must be
    contiguous."""
    if orientation >= 5:
        pixels = np.swapaxes(pixels, 0, 1)  # transposed first; then as 1-4 with the axes swapped
    if orientation in (2, 3, 6, 7):
        pixels = pixels[:, ::-1]
    if orientation in (3, 4, 7, 8):
        pixels = pixels[::-1]
    return pixels


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


def compose(rgb: np.ndarray, alpha: np.ndarray | None, gray: bool) -> np.ndarray:
    """(H, W, 3) [+ (H, W) alpha], uint8 or uint16 -> (H, W, C) in the input's colour mode: C = 1
    for gray, 2 is not encodable everywhere, so gray + alpha goes out as RGBA; 3 for colour; 4
    with alpha."""
    if alpha is not None:
        return np.concatenate([rgb, alpha[:, :, None]], axis=2)
    if gray:  # ITU-R 601 luma, as Pillow's convert("L")
        luma = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        top = 255 if rgb.dtype == np.uint8 else 65535
        return np.clip(luma + 0.5, 0, top).astype(rgb.dtype)[:, :, None]
    return rgb
