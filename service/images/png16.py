"""16-bit PNG bytes <-> (H, W, C) uint16 pixel arrays, with numpy and zlib only.

Pillow (13, as installed) reads 16-bit RGB, RGBA and gray+alpha PNGs as 8-bit and cannot write
them, so this module reads and writes every 16-bit colour type (0, 2, 4, 6), non-interlaced, for
/upscale to keep 16-bit input 16-bit. Reading is bounded (pixel limit checked from IHDR, inflating
stops one byte past what the image needs: a zlib bomb costs no memory). Ancillary chunks are
skipped unread (a 16-bit tRNS colour comes back opaque); Adam7 files are refused. The Average and
Paeth filters are undone along anti-diagonals, one numpy step each (_unfilter_wavefront).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from contract.errors import InvalidRequest, PayloadTooLarge

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # IHDR colour type -> samples per pixel
COLOR_TYPES = {channels: color for color, channels in CHANNELS.items()}
COLOR_NAMES = {0: "gray", 2: "RGB", 4: "gray + alpha", 6: "RGBA"}
# PNG row filter types (the byte that starts each scanline).
NONE, SUB, UP, AVERAGE, PAETH = range(5)
ZLIB_LEVEL = 6
IDAT_BYTES = 1 << 20  # written IDAT chunks hold at most this much: small enough for streaming decoders
MAX_CHUNK = (1 << 31) - 1  # the PNG limit on a chunk's length
# The wavefront works on a skewed copy of a band of rows, (rows + W + 1) x (rows + 1) pixels of int16
# bytes; bands are as tall as fit this budget (one band for a 1024x1024 RGB image: 25 MB).
WAVEFRONT_BYTES = 64 << 20
MIN_BAND_ROWS = 32
# Rows of None/Sub/Up are undone one at a time when they have at least this many bytes, else all at once.
ROW_LOOP_BYTES = 128
# The wavefront takes one numpy step (~10 us) per diagonal, H + W - 1 of them per band, however few
# pixels are on each: a 1000000x1 Paeth image would take 7-10 s, ~60 times a 1024x1024 one. Shapes
# needing more than this many steps, and more than one per PIXELS_PER_STEP pixels, are refused.
MAX_WAVEFRONT_STEPS = 1 << 16
PIXELS_PER_STEP = 16


def png_chunk(kind: bytes, data: bytes | memoryview) -> bytes:
    """One PNG chunk: length, type, data, CRC (of type and data). Every PNG this service writes
    is made of these (service.images.encoding's 8-bit files too)."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def _ihdr(data: bytes) -> tuple[int, int, int, int, int, int, int] | None:
    """(width, height, bit depth, colour type, compression, filter method, interlace) from a PNG's
    IHDR (which must be its first chunk), or None when data does not start like a PNG."""
    if len(data) < 33 or not data.startswith(SIGNATURE) or data[8:16] != b"\x00\x00\x00\x0dIHDR":
        return None
    fields: tuple[int, int, int, int, int, int, int] = struct.unpack_from(">IIBBBBB", data, 16)
    return fields


def is_png16(data: bytes) -> bool:
    """True when data is a PNG whose IHDR says 16 bits per sample in colour type 0, 2, 4 or 6: the
    files read_png16 is for (an interlaced one included, so that read_png16 can say why it refuses
    it). Reads the 33 header bytes only; does not check the IHDR CRC (read_png16 does)."""
    header = _ihdr(data)
    return header is not None and header[2] == 16 and header[3] in CHANNELS


def read_png16(data: bytes, max_pixels: int) -> np.ndarray:
    """A non-interlaced 16-bit PNG -> (H, W, C) uint16 in native byte order; C = 1, 3, 2, 4 for colour
    types 0 (gray), 2 (RGB), 4 (gray + alpha), 6 (RGBA).

    Raises PayloadTooLarge when W * H > max_pixels (judged from IHDR, before decompressing) and
    InvalidRequest for anything else wrong: not a 16-bit PNG, truncated or corrupt data, a CRC
    mismatch on IHDR or IDAT, an unknown row filter, too little or too much image data, Adam7
    interlacing. Ancillary chunks are ignored (tRNS included: see the module docstring)."""
    header = _ihdr(data)
    if header is None:
        raise InvalidRequest("not a PNG: the data does not start with a PNG signature and IHDR chunk")
    if zlib.crc32(data[12:29]) != struct.unpack_from(">I", data, 29)[0]:
        raise InvalidRequest("the PNG is corrupt: its IHDR chunk fails its CRC check")
    width, height, depth, color, compression, filter_method, interlace = header
    if depth != 16 or color not in CHANNELS:
        raise InvalidRequest(f"not a 16-bit gray, RGB or RGBA PNG (bit depth {depth}, colour type {color})")
    if interlace == 1:
        raise InvalidRequest(
            "interlaced (Adam7) 16-bit PNGs are not supported; save the image without interlacing"
        )
    if interlace != 0 or compression != 0 or filter_method != 0:
        raise InvalidRequest(
            f"the PNG's IHDR is invalid (compression {compression}, filter {filter_method}, "
            f"interlace {interlace})"
        )
    if not 1 <= width <= MAX_CHUNK or not 1 <= height <= MAX_CHUNK:
        raise InvalidRequest(f"the PNG's size {width}x{height} is invalid")
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"the image is {width}x{height} = {width * height} pixels; this server takes at most {max_pixels}"
        )
    channels = CHANNELS[color]
    bpp = 2 * channels  # bytes per pixel: the filters' "left" distance
    stride = 1 + width * bpp  # a scanline: its filter type byte, then the pixels
    expected = height * stride
    compressed = b"".join(_idat_chunks(data))
    # max_length bounds what inflating may allocate: one byte over the image tells "too much" apart
    # from "exactly right" without decompressing the rest of a bomb.
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(compressed, expected + 1)
    except zlib.error as e:
        raise InvalidRequest(f"the PNG's image data is corrupt: {e}") from None
    if len(raw) > expected:
        raise InvalidRequest(
            f"the PNG's image data decompresses to more than the {expected} bytes a {width}x{height} "
            f"{COLOR_NAMES[color]} 16-bit image needs"
        )
    if len(raw) < expected:
        raise InvalidRequest(
            f"the PNG is truncated: its image data holds {len(raw)} of the {expected} bytes a "
            f"{width}x{height} {COLOR_NAMES[color]} 16-bit image needs"
        )
    scanlines = np.frombuffer(raw, dtype=np.uint8).reshape(height, stride)
    filters = scanlines[:, 0]
    bad = np.flatnonzero(filters > PAETH)
    if bad.size:
        raise InvalidRequest(
            f"the PNG is corrupt: row {int(bad[0])} has filter type {int(filters[bad[0]])} (PNG has 0 to 4)"
        )
    samples = _unfilter(scanlines, width, bpp)  # (H, W * bpp) uint8: big-endian 16-bit samples
    return samples.view(">u2").reshape(height, width, channels).astype(np.uint16)


def _idat_chunks(data: bytes) -> Iterator[memoryview]:
    """The data of each IDAT chunk (CRC checked), walking the chunks after IHDR up to IEND. A file
    that ends cleanly after its last chunk but lacks IEND is accepted: the image data decides."""
    view = memoryview(data)
    pos = 33  # after the signature and IHDR
    while pos < len(data):
        if pos + 12 > len(data):
            raise InvalidRequest("the PNG is truncated: it ends inside a chunk header")
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 8 + length
        if length > MAX_CHUNK or end + 4 > len(data):
            raise InvalidRequest(f"the PNG is truncated or corrupt: a {kind!r} chunk runs past the end")
        if kind == b"IEND":
            return
        if kind == b"IDAT":
            body = view[pos + 8 : end]
            if zlib.crc32(body, zlib.crc32(kind)) != struct.unpack_from(">I", data, end)[0]:
                raise InvalidRequest("the PNG is corrupt: an IDAT chunk fails its CRC check")
            yield body
        elif kind == b"IHDR" or (kind[:1].isupper() and kind != b"PLTE"):
            # PLTE is a palette suggestion for colour types 2 and 6: harmless. Any other critical
            # chunk changes how the image must be read, so it may not be skipped.
            raise InvalidRequest(f"the PNG has an unexpected critical chunk {kind.decode('latin-1')!r}")
        pos = end + 4


def _unfilter(scanlines: np.ndarray, width: int, bpp: int) -> np.ndarray:
    """(H, 1 + W * bpp) uint8 filtered scanlines -> (H, W * bpp) uint8 reconstructed bytes.

    Rows are taken in bands; a band holding Average or Paeth rows goes through the wavefront, one
    with only None/Sub/Up rows is undone in whole-band numpy operations. Raises InvalidRequest when
    the wavefront would take far more steps than the image has pixels to justify (see
    MAX_WAVEFRONT_STEPS)."""
    height = scanlines.shape[0]
    band = _band_rows(height, width, bpp)
    bands = [(top, min(height, top + band)) for top in range(0, height, band)]
    serial = [bool((scanlines[top:bottom, 0] >= AVERAGE).any()) for top, bottom in bands]
    steps = sum(bottom - top + width - 1 for (top, bottom), wave in zip(bands, serial, strict=True) if wave)
    if steps > max(MAX_WAVEFRONT_STEPS, width * height // PIXELS_PER_STEP):
        raise InvalidRequest(
            f"16-bit PNGs as narrow as {width}x{height} are not supported when their rows use the Average "
            "or Paeth filter (they take one step per pixel of width + height to decode); save the image "
            "with other PNG filters, or at 8 bits"
        )
    out = np.empty((height, width * bpp), dtype=np.uint8)
    prior = np.zeros(width * bpp, dtype=np.uint8)  # the row above the first: zeros, by the PNG spec
    for (top, bottom), wave in zip(bands, serial, strict=True):
        lines, rows = scanlines[top:bottom], out[top:bottom]
        if wave:
            _unfilter_wavefront(lines, prior, rows, bpp)
        else:
            _unfilter_rows(lines, prior, rows, bpp)
        prior = out[bottom - 1]
    return out


def _band_rows(height: int, width: int, bpp: int) -> int:
    """Rows per wavefront band: as many as keep the skewed int16 copy within WAVEFRONT_BYTES (fewer
    rows mean more, smaller numpy steps: (H / rows) * (rows + W) of them)."""
    rows = height
    while rows > MIN_BAND_ROWS and (rows + width + 1) * (rows + 1) * bpp * 2 > WAVEFRONT_BYTES:
        rows = (rows + 1) // 2
    return rows


def _unfilter_rows(lines: np.ndarray, prior: np.ndarray, out: np.ndarray, bpp: int) -> None:
    """None, Sub and Up rows, in place into out (rows, W * bpp); uint8 arithmetic wraps mod 256 as the
    filters need. Wide rows go one at a time (a few whole-row operations each); narrow rows, where a
    tall image would make that loop long, all at once (see _unfilter_narrow_rows)."""
    if out.shape[1] < ROW_LOOP_BYTES:
        _unfilter_narrow_rows(lines, prior, out, bpp)
        return
    for y in range(lines.shape[0]):
        line, row = lines[y, 1:], out[y]
        kind = lines[y, 0]
        if kind == NONE:
            row[:] = line
        elif kind == SUB:  # a running sum along the row, per byte of the pixel
            np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8, out=row.reshape(-1, bpp))
        else:  # UP
            np.add(line, prior, out=row)
        prior = row


def _unfilter_narrow_rows(lines: np.ndarray, prior: np.ndarray, out: np.ndarray, bpp: int) -> None:
    """_unfilter_rows without a loop over rows. (numpy's running sum down axis 0 is slow on wide
    rows, so this is only for narrow ones.)"""
    kinds, body = lines[:, 0], lines[:, 1:]
    out[:] = body  # None rows are done
    sub = np.flatnonzero(kinds == SUB)
    if sub.size:
        pixels = out[sub].reshape(sub.size, -1, bpp)
        out[sub] = np.cumsum(pixels, axis=1, dtype=np.uint8).reshape(sub.size, -1)
    is_up = kinds == UP
    if is_up.any():
        # Through a run of Up rows, each row is the row before the run (a None or Sub row, done
        # above, or the band's prior row) plus the running sum of the run's filtered bytes, which is
        # sums[y] - sums[base] with sums the running sum over Up rows only.
        sums = np.cumsum(np.where(is_up[:, None], body, np.uint8(0)), axis=0, dtype=np.uint8)
        up = np.flatnonzero(is_up)
        base = np.maximum.accumulate(np.where(is_up, -1, np.arange(len(kinds))))[up]  # row before each run
        start = np.where((base >= 0)[:, None], out[base] - sums[base], prior)  # base -1: the prior row
        out[up] = start + sums[up]


def _unfilter_wavefront(lines: np.ndarray, prior: np.ndarray, out: np.ndarray, bpp: int) -> None:
    """Any mix of the five filters, in place into out (rows, W * bpp), one anti-diagonal at a time.

    Pixel (y, x) needs a = (y, x - 1), b = (y - 1, x) and c = (y - 1, x - 1): with Y = y + 1 and
    X = x + 1 (row 0 is the row above the band, column 0 the zeros left of the image) and D = X + Y,
    a is on diagonal D - 1, b on D - 1 one row up, c on D - 2 one row up. The band is copied into a
    skewed int16 array skew[D, Y, byte], where each diagonal is a contiguous (rows, bpp) block, so a
    step is plain slicing plus a dozen numpy operations on its rows."""
    rows, width = lines.shape[0], out.shape[1] // bpp
    kinds = np.concatenate([[NONE], lines[:, 0]]).astype(np.int16)  # by Y (Y = 0: unused)
    # last[Y]: the last row of the run of equal filter types that Y starts, to spot uniform steps.
    change = np.flatnonzero(kinds[1:] != kinds[:-1])  # Y where a run ends
    last = np.repeat(np.append(change, rows), np.diff(np.concatenate([[-1], change, [rows]])))
    # Per-row linear predictor (wa * a + wb * b) >> shift: None, Sub, Up and Average; Paeth apart.
    wa = np.isin(kinds, (SUB, AVERAGE)).astype(np.int16)[:, None]
    wb = np.isin(kinds, (UP, AVERAGE)).astype(np.int16)[:, None]
    shift = (kinds == AVERAGE).astype(np.int16)[:, None]
    paeth_rows = (kinds == PAETH)[:, None]

    depth = (rows + 1) * bpp  # int16 elements per diagonal
    skew = np.zeros((rows + width + 1, rows + 1, bpp), dtype=np.int16)
    item = skew.itemsize
    # grid[Y, X, byte] is skew[X + Y, Y, byte]: the band in image order, a view for copying in and out.
    grid = as_strided(
        skew, shape=(rows + 1, width + 1, bpp), strides=((depth + bpp) * item, depth * item, item)
    )
    grid[0, 1:] = prior.reshape(width, bpp)
    grid[1:, 1:] = lines[:, 1:].reshape(rows, width, bpp)  # filtered bytes, replaced as they are undone
    for diag in range(2, rows + width + 1):
        y0, y1 = max(1, diag - width), min(rows, diag - 1) + 1  # the rows Y on this diagonal
        cur = skew[diag, y0:y1]
        a, b, c = skew[diag - 1, y0:y1], skew[diag - 1, y0 - 1 : y1 - 1], skew[diag - 2, y0 - 1 : y1 - 1]
        if last[y0] >= y1 - 1:  # every row here has the same filter: only its predictor
            kind = kinds[y0]
            if kind == NONE:
                continue
            if kind == PAETH:
                cur += _paeth(a, b, c)
            elif kind == SUB:
                cur += a
            elif kind == UP:
                cur += b
            else:
                cur += (a + b) >> 1
        else:
            pred = a * wa[y0:y1]
            pred += b * wb[y0:y1]
            pred >>= shift[y0:y1]
            cur += np.where(paeth_rows[y0:y1], _paeth(a, b, c), pred)
        cur &= 0xFF
    out.reshape(rows, width, bpp)[:] = grid[1:, 1:]


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The Paeth predictor of int16 byte arrays: whichever of a, b, c is nearest p = a + b - c, ties
    going to a, then b."""
    pa = b - c  # p - a
    pb = a - c  # p - b
    pc = np.abs(pa + pb)  # |p - c|
    np.abs(pa, out=pa)
    np.abs(pb, out=pb)
    near = np.where(pb <= pc, b, c)
    np.minimum(pb, pc, out=pb)
    return np.where(pa <= pb, a, near)


def write_png16(pixels: np.ndarray, chunks: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    """(H, W, C) uint16, C in 1, 2, 3, 4 (gray, gray + alpha, RGB, RGBA) -> 16-bit PNG bytes.

    chunks: extra ancillary (type, data) chunks, such as (b"iCCP", ...), (b"pHYs", ...), (b"eXIf", ...)
    or (b"tEXt", ...), written in order after IHDR and before the image data. Each row gets the None,
    Sub or Up filter, whichever leaves the smallest sum of absolute (signed byte) values, the usual
    heuristic; Average and Paeth are left out because they compress photos only slightly better and
    would make the file slower to read back (also for read_png16); zlib level 6."""
    # Either byte order: the samples are written big-endian anyway.
    if pixels.ndim != 3 or pixels.shape[2] not in COLOR_TYPES or pixels.dtype.str[1:] != "u2":
        raise ValueError(
            f"expected (H, W, C) uint16 pixels with C in 1..4, got {pixels.dtype} {pixels.shape}"
        )
    height, width, channels = pixels.shape
    if not 1 <= height <= MAX_CHUNK or not 1 <= width <= MAX_CHUNK:
        raise ValueError(f"a PNG cannot be {width}x{height}")
    extras = []
    for kind, data in chunks:
        if len(kind) != 4 or not kind.isalpha() or not kind.isascii() or not kind[:1].islower():
            raise ValueError(f"{kind!r} is not an ancillary PNG chunk type (4 letters, the first lowercase)")
        if len(data) > MAX_CHUNK:
            raise ValueError(f"a {kind!r} chunk of {len(data)} bytes is over the PNG limit")
        extras.append(png_chunk(kind, data))
    bpp = 2 * channels
    samples = np.ascontiguousarray(pixels, dtype=">u2").view(np.uint8).reshape(height, width * bpp)
    compressed = zlib.compress(_filter_rows(samples, bpp).data, ZLIB_LEVEL)
    header = struct.pack(">IIBBBBB", width, height, 16, COLOR_TYPES[channels], 0, 0, 0)
    view = memoryview(compressed)
    idat = [png_chunk(b"IDAT", view[i : i + IDAT_BYTES]) for i in range(0, len(compressed), IDAT_BYTES)]
    return b"".join([SIGNATURE, png_chunk(b"IHDR", header), *extras, *idat, png_chunk(b"IEND", b"")])


def _filter_rows(samples: np.ndarray, bpp: int) -> np.ndarray:
    """(H, L) uint8 raw scanlines -> (H, 1 + L) filtered, each row with its filter type byte first."""
    height, length = samples.shape
    sub = np.empty_like(samples)  # uint8 differences wrap mod 256, as the filters are defined
    sub[:, :bpp] = samples[:, :bpp]
    np.subtract(samples[:, bpp:], samples[:, :-bpp], out=sub[:, bpp:])
    up = np.empty_like(samples)
    up[0] = samples[0]
    np.subtract(samples[1:], samples[:-1], out=up[1:])
    candidates = (samples, sub, up)  # index = filter type: NONE, SUB, UP
    # |byte as signed| = min(v, 256 - v); uint8 negation wraps to 256 - v.
    costs = np.stack([np.minimum(rows, -rows).sum(axis=1, dtype=np.int64) for rows in candidates])
    choice = costs.argmin(axis=0)  # ties go to the simpler filter
    out = np.empty((height, 1 + length), dtype=np.uint8)
    out[:, 0] = choice
    for kind, rows in enumerate(candidates):
        chosen = choice == kind
        if chosen.any():
            out[chosen, 1:] = rows[chosen]
    return out


def to_8_bits(values: np.ndarray) -> np.ndarray:
    """uint16 -> the nearest uint8 (x / 257, rounded: 65535 is 255)."""
    return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)
