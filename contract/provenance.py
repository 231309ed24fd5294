"""Provenance: what made a generated image, written into the image file itself, and read back.

Standard library only: the client (which installs neither Pillow nor pydantic) imports it too, so
the server's writer and the client's reader cannot disagree on the format.

A record is one compact JSON object, ASCII only (other characters escaped, so that EXIF's ASCII
field holds it unchanged), e.g. a /generate image's:

    {"schema":"gan-serving/1","endpoint":"/generate","model":{"name":"digits-conditional","version":1},
     "format":"png","source":"seed","truncation":null,"seed":7,"label":3,"label_name":"3"}

It holds the effective values (the label a default chose, each image's own noise seed, psi 1.0
when none was asked for), so the same image always carries the same record, whatever request made
it. `endpoint` says which request regenerates the image; `source` is "seed" or W_SOURCE (made from
a w the client sent: no seed can remake it). Where a record lives:

    PNG, APNG     an iTXt chunk with keyword KEY (and a "Software" text chunk: SOFTWARE)
    JPEG, WebP    EXIF IFD0: ImageDescription (0x010E) the record, Software (0x0131) SOFTWARE
    GIF           a comment extension
    npy           nowhere: the format has no room for metadata
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from contract.media import ANIMATION_MEDIA_TYPES, JSON, MEDIA_TYPES

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


# --- reading: any PNG, JPEG, WebP or GIF file, with struct alone ---------------------------------


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


# --- regenerating: a record -> the request that makes the image again ----------------------------


class NotReproducible(ValueError):
    """A record that no request can remake: an image from a client's w, or an unknown record."""


@dataclass(frozen=True)
class Regeneration:
    """The request that makes a recorded image again."""

    endpoint: str  # "/generate", "/walk" or "/mix"
    body: dict[str, Any]  # its JSON body (the model pinned as NAME@VERSION)
    accept: str  # its Accept header: the image's own media type, or JSON
    pick: tuple[str | int, ...] = ()  # with JSON: where the image's base64 data is in the answer

    @property
    def extension(self) -> str:
        """The file name extension of the image it answers."""
        fmt = self.body.get("animation") or self.body.get("format", "png")
        return ".png" if fmt == "apng" else ".jpg" if fmt == "jpeg" else f".{fmt}"


def regeneration(record: dict[str, Any]) -> Regeneration:
    """The request whose answer holds the recorded image again, byte for byte (for the same model
    version: the body pins it). NotReproducible for an image made from a client's w (the record
    says so), a schema this reader does not know, or a record that lacks a field it needs."""
    schema = record.get("schema")
    if schema != SCHEMA:
        raise NotReproducible(f"schema {schema!r} is not one this reader knows ({SCHEMA})")
    if record.get("source") == W_SOURCE:
        raise NotReproducible(
            f"made from a {W_SOURCE}, not from seeds: send the same w again "
            "(a w comes back with return_latents) to remake it"
        )
    try:
        endpoint = record["endpoint"]
        name, version = record["model"]["name"], record["model"]["version"]
        if not isinstance(name, str) or not MODEL_NAME.match(name) or not _is_int(version):
            raise NotReproducible("the record's model is not a model name and version")
        model = f"{name}@{version}"
        if endpoint == "/generate":
            regen = _generate(record, model)
        elif endpoint == "/walk":
            regen = _walk(record, model)
        elif endpoint == "/mix":
            regen = _mix(record, model)
        else:
            raise NotReproducible(f"unknown endpoint {endpoint!r}")
        _check_body(regen)
    except NotReproducible:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise NotReproducible(f"the record lacks what remaking the image needs ({e!r})") from None
    return regen


# A file's record is untrusted: what a regeneration request is built from must be what a real
# request holds (the CLI prints commands made from it, and a string with a newline in it could
# smuggle a second command into them).
MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")
CHOICES = {
    "format": {"png", "jpeg", "webp", "npy"},
    "animation": {"webp", "gif", "apng"},
    "method": {"slerp", "lerp"},
    "noise": {"const", "random"},
}
PLAIN = re.compile(r"^[\w.-]{1,64}\Z")  # a class name or a crossover group, nothing a shell reads
INTEGERS = ("seed", "from_seed", "to_seed", "steps", "noise_seed", "frame_ms")
NUMBERS = ("truncation", "truncation_psi")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_body(regen: Regeneration) -> None:
    body = regen.body
    for key, allowed in CHOICES.items():
        if key in body and body[key] not in allowed:
            raise NotReproducible(f"the record's {key} is not one of {', '.join(sorted(allowed))}")
    for key in INTEGERS:
        if body.get(key) is not None and not _is_int(body[key]):
            raise NotReproducible(f"the record's {key} is not an integer")
    for key in NUMBERS:
        if body.get(key) is not None and (
            not isinstance(body[key], int | float) or isinstance(body[key], bool)
        ):
            raise NotReproducible(f"the record's {key} is not a number")
    for key in ("seeds", "row_seeds", "col_seeds"):
        if key in body and not (isinstance(body[key], list) and all(_is_int(v) for v in body[key])):
            raise NotReproducible(f"the record's {key} are not integers")
    for key in ("labels", "label", "crossover"):
        value = body.get(key)
        if value is not None and not _is_int(value) and not (isinstance(value, str) and PLAIN.match(value)):
            raise NotReproducible(f"the record's {key} is neither a class index nor a plain name")
    if not all(_is_int(step) or step in ("images", "cells", "data") for step in regen.pick):
        raise NotReproducible("the record's frame is not an index")


def _generate(record: dict[str, Any], model: str) -> Regeneration:
    body: dict[str, Any] = {"model": model, "seed": record["seed"]}
    if record["label"] is not None:
        body["labels"] = record["label"]
    body |= _sampling(record)
    fmt = record["format"]
    body["format"] = fmt
    return Regeneration("/generate", body, MEDIA_TYPES[fmt])


def _walk(record: dict[str, Any], model: str) -> Regeneration:
    body: dict[str, Any] = {"model": model}
    if "seeds" in record:
        body["seeds"] = list(record["seeds"])
    else:
        body |= {"from_seed": record["from_seed"], "to_seed": record["to_seed"]}
    body |= {"steps": record["steps"], "method": record["method"]}
    if record["label"] is not None:
        body["label"] = record["label"]
    body |= _sampling(record)
    if "animation" in record:
        animation = record["animation"]
        body |= {"animation": animation, "frame_ms": record["frame_ms"]}
        return Regeneration("/walk", body, ANIMATION_MEDIA_TYPES[animation])
    body["format"] = record["format"]
    return Regeneration("/walk", body, JSON, ("images", record["frame"]["index"], "data"))


def _mix(record: dict[str, Any], model: str) -> Regeneration:
    body: dict[str, Any] = {"model": model}
    grid = record["image"] == "grid"
    if grid:
        body |= {"row_seeds": list(record["row_seeds"]), "col_seeds": list(record["col_seeds"])}
    else:
        body |= {"row_seeds": [record["row_seed"]], "col_seeds": [record["col_seed"]]}
    body["crossover"] = record["crossover"]
    if record["label"] is not None:
        body["label"] = record["label"]
    body |= _sampling(record)
    fmt = record["format"]
    body["format"] = fmt
    if grid:
        body["grid"] = True
        return Regeneration("/mix", body, MEDIA_TYPES[fmt])
    return Regeneration("/mix", body, JSON, ("cells", 0, 0, "data"))


def _sampling(record: dict[str, Any]) -> dict[str, Any]:
    """truncation (z models), or truncation_psi and the noise (style models), as request fields."""
    out: dict[str, Any] = {}
    if record.get("truncation") is not None:
        out["truncation"] = record["truncation"]
    if "truncation_psi" in record:
        out["truncation_psi"] = record["truncation_psi"]
        if record.get("noise") == "const":
            out["noise"] = "const"
        elif record.get("noise_seed") is not None:
            out["noise_seed"] = record["noise_seed"]
    return out
