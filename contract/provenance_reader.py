"""Reading the provenance record (contract.provenance) an image file carries: any PNG, APNG, JPEG,
WebP or GIF file, walked with struct alone (no pixel is decoded), so the client reads what the
server wrote without Pillow."""

from __future__ import annotations

import struct
import zlib
from typing import Any

from contract.provenance import (
    EXIF_SOFTWARE,
    IMAGE_DESCRIPTION,
    KEY,
    MAX_RECORD_BYTES,
    PNG_SIGNATURE,
    SOFTWARE,
    parse_record,
)


def read_provenance(data: bytes) -> dict[str, Any] | None:
    """The record an image file carries, or None when it carries none (an .npy file never does).

    ValueError, with what is wrong, for bytes that are not a PNG, JPEG, WebP, GIF or npy file, for
    a file cut short or malformed before its record, and for a record that is not valid JSON. The
    work is one pass over the file's structure (no pixel data is decoded; a compressed text is
    inflated only under our keyword, to MAX_RECORD_BYTES)."""
    if data.startswith(PNG_SIGNATURE):
        candidates = _png_texts(data)
    elif data.startswith(b"\xff\xd8\xff"):
        candidates = _jpeg_texts(data)
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        candidates = _webp_texts(data)
    elif data[:6] in (b"GIF87a", b"GIF89a"):
        candidates = _gif_texts(data)
    elif data.startswith(b"\x93NUMPY"):
        return None
    else:
        raise ValueError("not a PNG, JPEG, WebP, GIF or .npy file")
    for text, ours in candidates:
        record = parse_record(text, strict=ours)
        if record is not None:
            return record
    return None


# Each reader returns the texts that may be a record, as (text, under our own key), in file order.


def _png_texts(data: bytes) -> list[tuple[str, bool]]:
    """tEXt, zTXt and iTXt chunks with keyword KEY (CRCs are not checked: a reader, not a validator)."""
    found: list[tuple[str, bool]] = []
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        start, end = pos + 8, pos + 8 + length
        if end + 4 > len(data):
            if found:
                return found  # cut short after the record: the record is whole
            raise ValueError(f"truncated PNG: its {_name(kind)} chunk at byte {pos} runs past the end")
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            text = _png_text(kind, data[start:end])
            if text is not None:
                found.append((text, True))
        elif kind == b"IEND":
            return found
        pos = end + 4
    if not found:
        raise ValueError("truncated PNG: it ends before its IEND chunk")
    return found


def _png_text(kind: bytes, chunk: bytes) -> str | None:
    """A text chunk's text when its keyword is KEY, else None."""
    keyword, sep, rest = chunk.partition(b"\x00")
    if keyword != KEY.encode("latin-1") or not sep:
        return None
    if kind == b"tEXt":
        return rest.decode("latin-1")
    if kind == b"zTXt":
        if rest[:1] != b"\x00":
            raise ValueError("its zTXt chunk uses an unknown compression method")
        return _inflate(rest[1:]).decode("latin-1")
    # iTXt: compressed flag, method, language tag \0, translated keyword \0, UTF-8 text
    if len(rest) < 2:
        raise ValueError("its iTXt chunk is cut short")
    compressed, method = rest[0], rest[1]
    parts = rest[2:].split(b"\x00", 2)
    if len(parts) != 3:
        raise ValueError("its iTXt chunk is malformed")
    text = parts[2]
    if compressed:
        if method != 0:
            raise ValueError("its iTXt chunk uses an unknown compression method")
        text = _inflate(text)
    return text.decode("utf-8", "replace")


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_RECORD_BYTES + 1)
    except zlib.error as e:
        raise ValueError(f"its compressed {KEY} text is corrupt ({e})") from None
    if len(out) > MAX_RECORD_BYTES:
        raise ValueError(f"its {KEY} text is larger than {MAX_RECORD_BYTES} bytes")
    return out


def _jpeg_texts(data: bytes) -> list[tuple[str, bool]]:
    """The ImageDescription of each APP1 Exif segment (before the first scan: where EXIF lives)."""
    found: list[tuple[str, bool]] = []
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError(f"corrupt JPEG: no segment marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan, end of image: no metadata after
            return found
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2 or pos + 2 + length > len(data):
            break
        segment = data[pos + 4 : pos + 2 + length]
        if marker == 0xE1 and segment.startswith(b"Exif\x00\x00"):
            found.extend(_exif_texts(segment[6:]))
        pos += 2 + length
    if not found:
        raise ValueError(f"truncated or corrupt JPEG: its segments end at byte {pos}, before its image data")
    return found


def _webp_texts(data: bytes) -> list[tuple[str, bool]]:
    """The ImageDescription of the RIFF container's EXIF chunk."""
    found: list[tuple[str, bool]] = []
    (riff_size,) = struct.unpack_from("<I", data, 4) if len(data) >= 12 else (0,)
    end = min(len(data), 8 + riff_size)
    pos = 12
    while pos + 8 <= end:
        fourcc, size = struct.unpack_from("<4sI", data, pos)
        start, stop = pos + 8, pos + 8 + size
        if stop > len(data):
            if found:
                return found
            raise ValueError(f"truncated WebP: its {_name(fourcc)} chunk at byte {pos} runs past the end")
        if fourcc == b"EXIF":
            tiff = data[start:stop]
            found.extend(_exif_texts(tiff[6:] if tiff.startswith(b"Exif\x00\x00") else tiff))
        pos = stop + (size & 1)  # chunks are padded to an even size
    return found


def _exif_texts(tiff: bytes) -> list[tuple[str, bool]]:
    """IFD0's ImageDescription, counted as ours when its Software is SOFTWARE."""
    fields = _ifd0_strings(tiff, (IMAGE_DESCRIPTION, EXIF_SOFTWARE))
    description = fields.get(IMAGE_DESCRIPTION)
    return [] if description is None else [(description, fields.get(EXIF_SOFTWARE) == SOFTWARE)]


def _ifd0_strings(tiff: bytes, tags: tuple[int, ...]) -> dict[int, str]:
    """The string values (ASCII, BYTE or UNDEFINED, up to the first NUL) of `tags` in a TIFF
    header's first IFD."""
    if tiff[:4] == b"II*\x00":
        order = "<"
    elif tiff[:4] == b"MM\x00*":
        order = ">"
    else:
        raise ValueError("corrupt EXIF: no TIFF header")
    (offset,) = struct.unpack_from(order + "I", tiff, 4) if len(tiff) >= 8 else (len(tiff),)
    if offset + 2 > len(tiff):
        raise ValueError("corrupt EXIF: its first IFD lies past its end")
    (count,) = struct.unpack_from(order + "H", tiff, offset)
    if offset + 2 + 12 * count > len(tiff):
        raise ValueError("corrupt EXIF: its first IFD runs past its end")
    out: dict[int, str] = {}
    for i in range(count):
        tag, kind, n, value = struct.unpack_from(order + "HHI4s", tiff, offset + 2 + 12 * i)
        if tag not in tags or kind not in (1, 2, 7):  # BYTE, ASCII, UNDEFINED: one byte per count
            continue
        if n <= 4:
            raw = value[:n]
        else:
            (at,) = struct.unpack(order + "I", value)
            if at + n > len(tiff):
                raise ValueError(f"corrupt EXIF: tag 0x{tag:04X}'s value lies past its end")
            raw = tiff[at : at + n]
        out[tag] = raw.split(b"\x00", 1)[0].decode("latin-1")
    return out


def _gif_texts(data: bytes) -> list[tuple[str, bool]]:
    """Every comment extension's text, walking the blocks (skipping image data) to the trailer."""
    found: list[tuple[str, bool]] = []
    if len(data) < 13:
        raise ValueError("truncated GIF: no screen descriptor")
    pos = 13 + _colour_table(data[10])
    try:
        while pos < len(data):
            block = data[pos]
            if block == 0x3B:  # trailer
                return found
            if block == 0x21:  # extension: label, then sub-blocks
                if pos + 2 > len(data):
                    raise ValueError("an extension is cut short")
                label = data[pos + 1]
                text, pos = _sub_blocks(data, pos + 2, keep=label == 0xFE)
                if label == 0xFE:
                    found.append((text.decode("latin-1"), False))
            elif block == 0x2C:  # image: descriptor, local colour table, LZW code size, sub-blocks
                if pos + 11 > len(data):
                    raise ValueError("an image descriptor is cut short")
                pos += 10 + _colour_table(data[pos + 9]) + 1
                _, pos = _sub_blocks(data, pos, keep=False)
            else:
                raise ValueError(f"unknown block 0x{block:02X} at byte {pos}")
    except ValueError as e:
        if found:
            return found
        raise ValueError(f"corrupt GIF: {e}") from None
    return found


def _colour_table(flags: int) -> int:
    """The bytes of the colour table a descriptor's flags announce."""
    return 3 * (2 << (flags & 7)) if flags & 0x80 else 0


def _sub_blocks(data: bytes, pos: int, keep: bool) -> tuple[bytes, int]:
    """A run of GIF data sub-blocks from `pos`: (their data when `keep`, up to MAX_RECORD_BYTES,
    the position after the terminator)."""
    kept = bytearray()
    while True:
        if pos >= len(data):
            raise ValueError("data sub-blocks run past the end")
        size = data[pos]
        pos += 1
        if size == 0:
            return bytes(kept), pos
        if pos + size > len(data):
            raise ValueError("data sub-blocks run past the end")
        if keep and len(kept) < MAX_RECORD_BYTES:
            kept += data[pos : pos + size]
        pos += size


def _name(kind: bytes) -> str:
    return kind.decode("latin-1") if kind.isascii() and kind.isalnum() else repr(kind)
