"""An image file's metadata, carried from an upload to its upscaled answer, or written into a
generated image: the ICC profile, EXIF, XMP, the print resolution, and text.

An upscale keeps what the input said, made true of the output: EXIF orientation reset to 1 (the
pixels are upright), the resolution (DPI, EXIF X/YResolution) multiplied by the factor so the print
size stays, EXIF's pixel dimensions the new ones. `strip`: `gps` (the default) drops the EXIF GPS
block and XMP's GPS properties, `all` every EXIF, XMP and resolution field, `none` nothing. The
ICC profile is kept even with `all`: it is the meaning of the pixel values, not of the photo.
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, PngImagePlugin

from contract.provenance import EXIF_SOFTWARE, IMAGE_DESCRIPTION, SOFTWARE

ORIENTATION = 0x0112
X_RESOLUTION, Y_RESOLUTION, RESOLUTION_UNIT = 0x011A, 0x011B, 0x0128
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
PIXEL_X, PIXEL_Y = 0xA002, 0xA003
XMP_PNG_KEY = "XML:com.adobe.xmp"
STRIP = ("all", "gps", "none")
# The prefixes an XMP packet binds to the EXIF namespace (usually exif:), whose GPS* properties
# strip=gps removes. Every pattern here starts with a literal and scans forward once: an upload's
# XMP (megabytes, possibly hostile) must not cost more than a pass over it.
EXIF_NAMESPACE = re.compile(
    rb'xmlns:([A-Za-z_][\w.-]{0,63})\s*=\s*["\']http://ns\.adobe\.com/exif/1\.0/["\']'
)
# The largest EXIF and XMP blocks a JPEG holds (one APP1 segment each).
JPEG_MAX_EXIF, JPEG_MAX_XMP = 65533, 65504
MAX_DPI = 1e6  # beyond this a resolution is nonsense (and overflows PNG's pHYs)
# XMP's copy of the orientation (viewers may read either): reset with EXIF's.
XMP_ORIENTATION = re.compile(rb'(tiff:Orientation\s*=\s*["\']|<tiff:Orientation>\s*)[1-8]')


@dataclass
class ImageMetadata:
    icc: bytes | None = None
    exif: Image.Exif | None = None
    xmp: bytes | None = None
    dpi: tuple[float, float] | None = None
    text: dict[str, str] = field(default_factory=dict)  # PNG text chunks (generated images)

    def fit(self, fmt: str, gray: bool) -> list[str]:
        """Drops what a file of `fmt` with gray (one channel) or colour pixels cannot hold, or
        would hold falsely; returns what was dropped, and why."""
        dropped = []
        if self.icc and self.icc[16:20] != (b"GRAY" if gray else b"RGB "):
            space = "".join(c if c.isalnum() else "?" for c in self.icc[16:20].decode("latin-1").strip())
            dropped.append(f"icc (a {space} profile does not describe {'gray' if gray else 'RGB'} pixels)")
            self.icc = None
        if fmt == "jpeg":
            if self.exif is not None and len(self.exif.tobytes()) > JPEG_MAX_EXIF:
                dropped.append(f"exif (over the {JPEG_MAX_EXIF} bytes a JPEG holds)")
                self.exif = None
            if self.xmp is not None and len(self.xmp) > JPEG_MAX_XMP:
                dropped.append(f"xmp (over the {JPEG_MAX_XMP} bytes a JPEG holds)")
                self.xmp = None
        return dropped

    def save_options(self, fmt: str) -> dict[str, Any]:
        """Keyword arguments of Pillow's save for this format."""
        options: dict[str, Any] = {}
        if self.icc:
            options["icc_profile"] = self.icc
        if self.exif is not None and len(self.exif):
            options["exif"] = self.exif.tobytes()
        if self.dpi and fmt in ("jpeg", "png"):  # WebP has no resolution field (EXIF's stands)
            options["dpi"] = self.dpi
        if fmt == "png":
            if self.xmp or self.text:
                info = PngImagePlugin.PngInfo()
                for key, value in self.text.items():
                    info.add_itxt(key, value)
                if self.xmp:
                    info.add_itxt(XMP_PNG_KEY, self.xmp.decode("utf-8", "replace"))
                options["pnginfo"] = info
        elif self.xmp:
            options["xmp"] = self.xmp
        return options

    def png_chunks(self) -> list[tuple[bytes, bytes]]:
        """The same as PNG chunks, for PNGs written without Pillow (16-bit, small ones)."""
        chunks: list[tuple[bytes, bytes]] = []
        if self.icc:
            chunks.append((b"iCCP", b"ICC profile\x00\x00" + zlib.compress(self.icc)))
        if self.dpi:  # at most MAX_DPI (metadata_for_output): within pHYs's 32 bits
            per_metre = [max(1, round(d / 0.0254)) for d in self.dpi]
            chunks.append((b"pHYs", struct.pack(">IIB", per_metre[0], per_metre[1], 1)))
        if self.exif is not None and len(self.exif):
            chunks.append((b"eXIf", self.exif.tobytes()[6:]))  # without the "Exif\0\0" prefix
        for key, value in self.text.items():
            chunks.append((b"iTXt", itxt(key, value)))
        if self.xmp:
            chunks.append((b"iTXt", itxt(XMP_PNG_KEY, self.xmp.decode("utf-8", "replace"))))
        return chunks


def itxt(key: str, value: str) -> bytes:
    """An uncompressed international text chunk's data (UTF-8)."""
    return key.encode("latin-1") + b"\x00\x00\x00\x00\x00" + value.encode("utf-8")


def read_metadata(image: Image.Image) -> ImageMetadata:
    """What an opened upload says about itself (before its orientation is applied)."""
    info = image.info
    icc = info.get("icc_profile") or None
    exif: Image.Exif | None = None
    raw = info.get("exif")  # as the file gave it (getexif() could decode a PNG's pixels to look)
    if isinstance(raw, bytes) and raw:
        try:
            exif = Image.Exif()
            exif.load(raw)
            exif.get_ifd(EXIF_IFD)  # loaded now, so that tobytes() writes them back
            exif.get_ifd(GPS_IFD)
            exif.tobytes()  # what cannot be written back is dropped now, not failed on later
        except Exception:  # a corrupt EXIF block is dropped, not an error: the pixels are fine
            exif = None
    if exif is not None and not len(exif):
        exif = None
    xmp = info.get("xmp") or info.get(XMP_PNG_KEY) or None
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    dpi = info.get("dpi")
    return ImageMetadata(
        icc=icc if isinstance(icc, bytes) else None,
        exif=exif,
        xmp=xmp if isinstance(xmp, bytes) else None,
        dpi=(float(dpi[0]), float(dpi[1])) if dpi and dpi[0] and dpi[1] else None,
    )


def metadata_for_output(
    meta: ImageMetadata, size: tuple[int, int], factors: tuple[float, float], strip: str
) -> tuple[ImageMetadata, list[str]]:
    """The input's metadata made true of an upright output of `size` (width, height), made larger
    by `factors` (x, y), with `strip` applied; and what had to be dropped besides (and why)."""
    if strip not in STRIP:
        raise ValueError(f"strip must be one of {', '.join(STRIP)}, got {strip!r}")
    if strip == "all":
        return ImageMetadata(icc=meta.icc), []
    dropped: list[str] = []
    fx, fy = factors
    exif: Image.Exif | None = None
    if meta.exif is not None:
        exif = Image.Exif()
        exif.load(meta.exif.tobytes())
        exif.get_ifd(EXIF_IFD)
        if strip == "gps":
            exif.get_ifd(GPS_IFD).clear()
            exif.pop(GPS_IFD, None)
        else:
            exif.get_ifd(GPS_IFD)
        if ORIENTATION in exif:
            exif[ORIENTATION] = 1
        if exif.get(EXIF_SOFTWARE) == SOFTWARE:  # a generated image's record describes the input
            exif.pop(IMAGE_DESCRIPTION, None)  # only: regenerating from it would not make this file
            del exif[EXIF_SOFTWARE]
        for tag, factor in ((X_RESOLUTION, fx), (Y_RESOLUTION, fy)):
            if tag in exif:
                scaled = _resolution(exif[tag], factor)
                if scaled is None:
                    del exif[tag]
                else:
                    exif[tag] = scaled
        ifd = exif.get_ifd(EXIF_IFD)
        if PIXEL_X in ifd or PIXEL_Y in ifd:
            ifd[PIXEL_X], ifd[PIXEL_Y] = size
    xmp = meta.xmp
    if xmp is not None:
        xmp = XMP_ORIENTATION.sub(rb"\g<1>1", xmp)
        if strip == "gps":
            xmp = without_gps(xmp)
            if xmp is None:
                dropped.append("xmp (a GPS property in it could not be removed: the packet is malformed)")
    dpi = None
    if meta.dpi is not None:
        x, y = _resolution(meta.dpi[0], fx), _resolution(meta.dpi[1], fy)
        dpi = None if x is None or y is None else (x, y)
    return ImageMetadata(icc=meta.icc, exif=exif, xmp=xmp, dpi=dpi), dropped


def _resolution(value: Any, factor: float) -> float | None:
    """A resolution multiplied by the factor, or None when it was no usable number."""
    try:
        scaled = float(value) * factor
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return scaled if math.isfinite(scaled) and 0 < scaled <= MAX_DPI else None


def without_gps(xmp: bytes) -> bytes | None:
    """The XMP packet without its GPS properties (the EXIF namespace's GPS*, under any prefix it
    is bound to), as attributes or elements; None when an element's end cannot be found (a
    malformed packet, which is then dropped whole rather than kept with GPS in it)."""
    prefixes = {b"exif", *EXIF_NAMESPACE.findall(xmp)}
    for prefix in sorted(prefixes):
        name = re.escape(prefix) + rb":GPS[\w]*"
        xmp = re.sub(rb"\s" + name + rb"\s*=\s*(?:\"[^\"]*\"|'[^']*')", b"", xmp)
        opening = re.compile(rb"<(" + name + rb")\b[^<>]*?(/?)>")
        parts, position = [], 0
        while (match := opening.search(xmp, position)) is not None:
            parts.append(xmp[position : match.start()])
            position = match.end()
            if match.group(2):  # <exif:GPSx ... />
                continue
            close = xmp.find(b"</" + match.group(1), position)
            end = -1 if close < 0 else xmp.find(b">", close)
            if end < 0:
                return None
            position = end + 1
        parts.append(xmp[position:])
        xmp = b"".join(parts)
    return xmp
