"""Provenance records (contract.provenance) as what Pillow and service.images.encoding write into a file:
the per-format half of the record format (the reading half is contract.provenance, stdlib only)."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from contract.provenance import EXIF_SOFTWARE, IMAGE_DESCRIPTION, KEY, SOFTWARE, exif_block
from service.images.encoding import SMALL_PNG_BYTES, encode_image, small_png
from service.images.metadata import ImageMetadata, itxt

# The PNG chunks record_metadata's text makes (ImageMetadata.png_chunks), prepared once: a small PNG
# is written in a few microseconds, and building them per image would double that.
_RECORD_ITXT = itxt(KEY, "")
_SOFTWARE_ITXT = (b"iTXt", itxt("Software", SOFTWARE))


def record_metadata(fmt: str, record: str) -> ImageMetadata | None:
    """The metadata that carries `record` (ASCII JSON) in a file of `fmt`: PNG text chunks (the
    small-PNG path writes them as plain iTXt chunks, without Pillow), JPEG and WebP EXIF; None for
    npy, which has no room for it."""
    if fmt == "png":
        return ImageMetadata(text={KEY: record, "Software": SOFTWARE})
    if fmt in ("jpeg", "webp"):
        return ImageMetadata(exif=RecordExif(record))
    return None


class RecordExif(Image.Exif):
    """An Exif of ImageDescription (the record) and Software, whose bytes are made once, by hand
    (provenance.exif_block: the bytes Image.Exif.tobytes makes, in a twentieth of its time). Made
    to be written, not changed: tobytes does not see later changes."""

    def __init__(self, record: str) -> None:
        super().__init__()
        self[IMAGE_DESCRIPTION] = record
        self[EXIF_SOFTWARE] = SOFTWARE
        self._block = exif_block(record)

    def tobytes(self, offset: int = 8) -> bytes:
        return self._block


def encode_recorded(pixels: np.ndarray, fmt: str, record: str | None) -> bytes:
    """encode_image with the image's record written into the file (where the format has room)."""
    if record is not None and fmt == "png" and pixels.dtype == np.uint8 and pixels.nbytes <= SMALL_PNG_BYTES:
        # encode_image's own small-PNG path, with the chunks made ready
        return small_png(pixels, ((b"iTXt", _RECORD_ITXT + record.encode("ascii")), _SOFTWARE_ITXT))
    return encode_image(pixels, fmt, None if record is None else record_metadata(fmt, record))


def animation_options(fmt: str, record: str) -> dict[str, Any]:
    """Pillow save options that put `record` into an animation of `fmt` (webp, gif, apng): what
    each format's writer in Pillow takes (APNG text chunks, WebP EXIF, a GIF comment)."""
    if fmt == "apng":
        metadata = ImageMetadata(text={KEY: record, "Software": SOFTWARE})
        return metadata.save_options("png")
    if fmt == "webp":
        return {"exif": exif_block(record)}
    return {"comment": record}
