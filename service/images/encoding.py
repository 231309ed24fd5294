"""uint8 pixel arrays <-> image file bytes. Runs on the encode thread pool, never on the event loop."""

from __future__ import annotations

import functools
import io
import struct
import zlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

from contract.media import FORMATS
from service.images.metadata import ImageMetadata
from service.images.png16 import png_chunk, to_8_bits, write_png16

JPEG_QUALITY = 95
WEBP_QUALITY = 95
# Below this many bytes of pixels, PNGs are written directly with zlib: PIL's per-image overhead
# is most of the cost for a 32x32 image. Larger images go through PIL, whose adaptive row filters
# compress photographs much better.
SMALL_PNG_BYTES = 64 * 1024
STORED_PNG_BYTES = 4096
PNG_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> gray, gray+alpha, RGB, RGBA


@functools.cache
def _png_head(height: int, width: int, channels: int) -> bytes:
    """Signature and IHDR for one image shape (generators make one shape: computed once)."""
    header = struct.pack(">IIBBBBB", width, height, 8, PNG_COLOR_TYPES[channels], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)


_PNG_END = png_chunk(b"IEND", b"")


def small_png(pixels: np.ndarray, chunks: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    """(H, W, C) uint8 -> PNG bytes: 8-bit, no interlace, filter 'none' on every row; `chunks`
    (type, data) go between the header and the pixels."""
    h, w, c = pixels.shape
    rows = np.empty((h, 1 + w * c), dtype=np.uint8)  # each row: filter byte 0, then the pixels
    rows[:, 0] = 0
    rows[:, 1:] = pixels.reshape(h, w * c)
    # A few KB of noisy pixels barely compress, and setting up deflate costs ~20 us, more than
    # the rest of the file: tiny images are stored (level 0); larger ones are compressed.
    level = 0 if rows.nbytes <= STORED_PNG_BYTES else 6
    data = b"IDAT" + zlib.compress(rows.data, level)
    idat = struct.pack(">I", len(data) - 4) + data + struct.pack(">I", zlib.crc32(data))
    extra = b"".join(png_chunk(kind, data) for kind, data in chunks)
    return _png_head(h, w, c) + extra + idat + _PNG_END


def encode_image(pixels: np.ndarray, fmt: str, metadata: ImageMetadata | None = None) -> bytes:
    """(H, W, C) uint8 or uint16, C in 1, 3, 4 -> file bytes, with `metadata` written into it
    (not into npy). PNG and npy are lossless; npy keeps (H, W, C). 16-bit pixels stay 16-bit in a
    PNG (and npy); JPEG and WebP hold 8 bits, so they get the nearest 8-bit values."""
    if pixels.dtype == np.uint16:
        if fmt == "png":
            return write_png16(pixels, metadata.png_chunks() if metadata else ())
        if fmt != "npy":
            pixels = to_8_bits(pixels)
    if fmt == "png" and pixels.nbytes <= SMALL_PNG_BYTES:
        return small_png(pixels, metadata.png_chunks() if metadata else ())
    if fmt == "npy":
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(pixels), allow_pickle=False)
        return buffer.getvalue()
    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    buffer = io.BytesIO()
    options = metadata.save_options(fmt) if metadata else {}
    if fmt == "png":
        # fast; PNG stays lossless at any level
        image.save(buffer, format="PNG", compress_level=1, **options)
    elif fmt == "jpeg":
        image.convert("RGB" if image.mode == "RGBA" else image.mode).save(
            buffer, format="JPEG", quality=JPEG_QUALITY, **options
        )
    elif fmt == "webp":
        image.save(buffer, format="WEBP", quality=WEBP_QUALITY, **options)
    else:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    return buffer.getvalue()
