"""Provenance: what made a generated image, written into the image file itself, and read back.

Standard library only: the client imports it too, so writer and reader cannot disagree. A record
is one compact ASCII-only JSON object (EXIF's ASCII field holds it unchanged) of effective values,
so the same image always carries the same record; `endpoint` says which request regenerates it,
`source` is "seed" or W_SOURCE (a client's w: no seed remakes it). It lives in: PNG, APNG an iTXt
chunk KEY (and a "Software" chunk SOFTWARE); JPEG, WebP EXIF IFD0 ImageDescription (0x010E),
Software (0x0131) SOFTWARE; GIF a comment; npy nowhere. An example: docs/api.md#provenance.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

KEY = "gan-serving"  # the PNG text keyword
SOFTWARE = "gan-serving"  # PNG "Software" text, EXIF Software
SCHEMA = "gan-serving/1"  # a record's schema: its name and version
W_SOURCE = "w given by the client"
IMAGE_DESCRIPTION, EXIF_SOFTWARE = 0x010E, 0x0131
# A record is a few hundred bytes; no text chunk of more than this is read (nor inflated) as one.
MAX_RECORD_BYTES = 64 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --- writing: the server builds a request's records -----------------------------------------------


@dataclass(frozen=True)
class RecordHead:
    """The fields every image of a request shares, serialized once per request; each image then
    adds only its own (seed, label, ...) with `record`."""

    text: str  # the JSON object's text without its closing brace

    @classmethod
    def of(cls, endpoint: str, model: str, version: int, **fields: Any) -> RecordHead:
        head = {"schema": SCHEMA, "endpoint": endpoint, "model": {"name": model, "version": version}}
        return cls(_dumps(head | fields)[:-1])

    def record(self, **fields: Any) -> str:
        """The whole record: the shared fields, then `fields` (in their order)."""
        return f"{self.text},{_dumps(fields)[1:]}" if fields else self.text + "}"


def exif_block(record: str) -> bytes:
    """The EXIF block ("Exif\\0\\0" and a big-endian TIFF header) holding `record` as IFD0's
    ImageDescription and SOFTWARE as its Software: the bytes Pillow's Image.Exif writes for those two
    tags, made here in a microsecond instead of its twenty (every JPEG and WebP image carries one)."""
    values = [
        (IMAGE_DESCRIPTION, record.encode("ascii") + b"\x00"),
        (EXIF_SOFTWARE, SOFTWARE.encode() + b"\x00"),
    ]
    entries, data = b"", b""
    at = 8 + 2 + 12 * len(values) + 4  # the values follow the IFD: its count, entries, next-IFD offset
    for tag, value in values:
        if len(value) <= 4:
            entries += struct.pack(">HHI4s", tag, 2, len(value), value)
        else:
            entries += struct.pack(">HHII", tag, 2, len(value), at + len(data))
            data += value + b"\x00" * (len(value) & 1)  # each value starts on a word boundary
    return b"Exif\x00\x00MM\x00*" + struct.pack(">IH", 8, len(values)) + entries + b"\x00" * 4 + data


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)  # one, not one per call


def _dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def parse_record(text: str, strict: bool = True) -> dict[str, Any] | None:
    """A record's text -> the record. Text that is not one (another program's image description or
    comment) is None, or with `strict` (text under our own key) a ValueError."""
    if len(text) > MAX_RECORD_BYTES:
        if strict:
            raise ValueError(f"its {KEY} text is larger than {MAX_RECORD_BYTES} bytes")
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested arrays, thousands deep
        if strict:
            raise ValueError(f"its {KEY} record is not valid JSON") from None
        return None
    if isinstance(value, dict) and str(value.get("schema", "")).startswith(KEY + "/"):
        return value
    if strict:
        raise ValueError(f"its {KEY} text is not a record (no schema {SCHEMA!r})")
    return None
