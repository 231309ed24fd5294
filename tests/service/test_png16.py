"""service.images.png16: 16-bit PNG reading and writing, checked against PNGs encoded here by hand (with every
row filter, by an encoder independent of the module's code) and against Pillow, which undoes the
filters in C. Hostile files get InvalidRequest or PayloadTooLarge without costing memory."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib
from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image

from contract.errors import InvalidRequest, PayloadTooLarge
from service.images import png16
from service.images.png16 import is_png16, read_png16, write_png16

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type
NONE, SUB, UP, AVERAGE, PAETH = range(5)
BIG = 1 << 40  # a max_pixels that allows anything


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def ihdr(width: int, height: int, color: int = 2, depth: int = 16, interlace: int = 0) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, interlace))


def walk(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk, asserting each CRC and that the file ends right after IEND."""
    assert data[:8] == SIGNATURE
    found, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        assert crc == zlib.crc32(kind + body), kind
        found.append((kind, body))
        pos += 12 + length
    assert pos == len(data) and found[-1] == (b"IEND", b"")
    return found


def forward_filter(raw: np.ndarray, bpp: int, kinds: Sequence[int]) -> np.ndarray:
    """(H, L) uint8 raw scanlines -> (H, 1 + L) filtered with kinds[y] on row y, straight from the PNG
    spec. The forward filters predict from the raw bytes, so they vectorise over the whole image."""
    r = raw.astype(np.int32)
    a = np.zeros_like(r)  # the byte one pixel to the left
    a[:, bpp:] = r[:, :-bpp]
    b = np.zeros_like(r)  # the byte above
    b[1:] = r[:-1]
    c = np.zeros_like(r)  # the byte above and to the left
    c[1:, bpp:] = r[:-1, :-bpp]
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    predictors = [np.zeros_like(r), a, b, (a + b) // 2, paeth]
    out = np.empty((raw.shape[0], raw.shape[1] + 1), dtype=np.uint8)
    for y, kind in enumerate(kinds):
        out[y, 0] = kind
        out[y, 1:] = (r[y] - predictors[kind][y]) % 256
    return out


def encode(
    pixels: np.ndarray,
    kinds: Sequence[int],
    *,
    idat_size: int | None = None,
    extra: Sequence[tuple[bytes, bytes]] = (),
) -> bytes:
    """(H, W, C) uint16 -> a 16-bit PNG whose row y uses filter kinds[y]; the zlib stream split into
    IDAT chunks of idat_size bytes when given."""
    height, width, channels = pixels.shape
    raw = pixels.astype(">u2").view(np.uint8).reshape(height, -1)
    stream = zlib.compress(forward_filter(raw, 2 * channels, kinds).tobytes(), 6)
    size = idat_size or len(stream)
    idats = [chunk(b"IDAT", stream[i : i + size]) for i in range(0, len(stream), size)]
    head = SIGNATURE + ihdr(width, height, COLOR_TYPES[channels])
    return b"".join([head, *(chunk(k, d) for k, d in extra), *idats, chunk(b"IEND", b"")])


def noise(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65536, (height, width, channels), dtype=np.uint16)


def smooth(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    """Gradients plus a little noise: neighbouring bytes are close, so every Paeth branch is taken
    (pure noise mostly picks a) and the writer's Sub/Up choices pay."""
    y, x = np.mgrid[0:height, 0:width]
    planes = [(x * (97 + 31 * i) + y * (53 + 17 * i) + x * y * i) % 65536 for i in range(channels)]
    jitter = np.random.default_rng(seed).integers(0, 64, (height, width, channels))
    return ((np.stack(planes, axis=-1) + jitter) % 65536).astype(np.uint16)


def pillow_png(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


# --- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (33, 17), (5, 64)])
def test_round_trip_noise(channels: int, shape: tuple[int, int]) -> None:
    pixels = noise(*shape, channels, seed=channels)
    data = write_png16(pixels)
    assert is_png16(data)
    back = read_png16(data, max_pixels=shape[0] * shape[1])
    assert back.dtype == np.uint16 and back.dtype.isnative and back.shape == pixels.shape
    np.testing.assert_array_equal(back, pixels)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_round_trip_smooth_uses_sub_and_up(channels: int) -> None:
    pixels = smooth(40, 29, channels)
    data = write_png16(pixels)
    np.testing.assert_array_equal(read_png16(data, BIG), pixels)
    stream = b"".join(body for kind, body in walk(data) if kind == b"IDAT")
    kinds = set(zlib.decompress(stream)[:: 1 + 29 * 2 * channels])
    assert kinds <= {NONE, SUB, UP} and len(kinds) >= 2  # it does choose per row


def test_writer_compresses_gradients() -> None:
    pixels = smooth(64, 64, 3)
    unfiltered = zlib.compress(pixels.astype(">u2").tobytes(), 6)
    assert len(write_png16(pixels)) < 0.8 * len(unfiltered)


def test_write_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="uint16"):
        write_png16(np.zeros((2, 2, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint16"):
        write_png16(np.zeros((2, 2, 5), dtype=np.uint16))
    with pytest.raises(ValueError, match="uint16"):
        write_png16(np.zeros((2, 2), dtype=np.uint16))
    with pytest.raises(ValueError, match="cannot be"):
        write_png16(np.zeros((0, 2, 3), dtype=np.uint16))
    for kind in (b"IDAT", b"PLTE", b"tEX", b"t3Xt"):
        with pytest.raises(ValueError, match="ancillary"):
            write_png16(np.zeros((1, 1, 1), dtype=np.uint16), [(kind, b"")])


def test_write_accepts_any_layout() -> None:
    pixels = noise(9, 6, 4)
    strided = np.asfortranarray(pixels)[:, ::-1]
    np.testing.assert_array_equal(read_png16(write_png16(strided), BIG), strided)
    swapped = pixels.astype(">u2")  # big-endian input is still uint16
    np.testing.assert_array_equal(read_png16(write_png16(swapped), BIG), pixels)


# --- every row filter -------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("kind", [NONE, SUB, UP, AVERAGE, PAETH])
@pytest.mark.parametrize("image", [noise, smooth])
def test_reads_each_filter(channels: int, kind: int, image: object) -> None:
    assert callable(image)
    pixels = image(13, 11, channels)
    np.testing.assert_array_equal(read_png16(encode(pixels, [kind] * 13), BIG), pixels)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (7, 5), (33, 17), (6, 50), (50, 6)])
def test_reads_mixed_filters(channels: int, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape) * channels)
    pixels = smooth(*shape, channels, seed=channels)
    kinds = list(rng.integers(0, 5, shape[0]))
    np.testing.assert_array_equal(read_png16(encode(pixels, kinds), BIG), pixels)


def test_reads_runs_of_filters() -> None:
    # Runs of equal filters make some wavefront steps uniform and others mixed.
    kinds = [PAETH] * 5 + [AVERAGE] * 4 + [NONE] * 3 + [UP, SUB] * 3 + [PAETH, AVERAGE] * 2 + [SUB] * 6
    pixels = smooth(len(kinds), 23, 3)
    np.testing.assert_array_equal(read_png16(encode(pixels, kinds), BIG), pixels)


def test_reads_in_bands(monkeypatch: pytest.MonkeyPatch) -> None:
    # A tiny wavefront budget forces bands of 3 rows: bands with and without Average/Paeth rows,
    # each starting from the band above's last row.
    monkeypatch.setattr(png16, "WAVEFRONT_BYTES", 1)
    monkeypatch.setattr(png16, "MIN_BAND_ROWS", 4)
    kinds = [PAETH, UP, SUB] + [NONE, UP, SUB] + [UP, NONE, AVERAGE] + [AVERAGE] * 3 + [UP] * 3
    kinds += [UP, PAETH, SUB, PAETH, SUB, PAETH, SUB]
    assert png16._band_rows(len(kinds), 19, 2) == 3
    for channels in (1, 3):
        pixels = smooth(len(kinds), 19, channels)
        np.testing.assert_array_equal(read_png16(encode(pixels, kinds), BIG), pixels)


@pytest.mark.parametrize("row_loop_bytes", [0, 1 << 30])  # every band row by row; all rows at once
@pytest.mark.parametrize(("channels", "width"), [(1, 1), (3, 2), (4, 9), (2, 40), (3, 70)])
def test_reads_none_sub_up_rows(
    monkeypatch: pytest.MonkeyPatch, row_loop_bytes: int, channels: int, width: int
) -> None:
    # Runs of Up rows after None rows, after Sub rows and at the top (where the row above is zeros).
    monkeypatch.setattr(png16, "ROW_LOOP_BYTES", row_loop_bytes)
    kinds = [UP, UP, SUB, UP, UP, UP, NONE, UP, SUB, SUB, NONE, NONE, UP, SUB, UP]
    pixels = smooth(len(kinds), width, channels)
    np.testing.assert_array_equal(read_png16(encode(pixels, kinds), BIG), pixels)
    np.testing.assert_array_equal(read_png16(write_png16(pixels), BIG), pixels)


def test_refuses_very_narrow_paeth_images() -> None:
    # One wavefront step per diagonal: 1x70000 would take 70000 steps for 70000 pixels.
    pixels = smooth(1, 70_000, 1)
    with pytest.raises(InvalidRequest, match=r"as narrow as 70000x1 .*Average or Paeth"):
        read_png16(encode(pixels, [PAETH]), BIG)
    tall = smooth(70_000, 1, 1)
    with pytest.raises(InvalidRequest, match="as narrow as 1x70000"):
        read_png16(encode(tall, [AVERAGE] * 70_000), BIG)
    # Other filters undo a row, or a whole narrow band, at a time: fine at any shape.
    np.testing.assert_array_equal(read_png16(encode(pixels, [SUB]), BIG), pixels)
    kinds = list(np.random.default_rng(1).integers(0, 3, 70_000))
    np.testing.assert_array_equal(read_png16(encode(tall, kinds), BIG), tall)
    np.testing.assert_array_equal(read_png16(write_png16(tall), BIG), tall)


def test_reads_many_idat_chunks() -> None:
    pixels = smooth(17, 15, 4)
    data = encode(pixels, [PAETH, AVERAGE, SUB, UP, NONE] * 3 + [PAETH, PAETH], idat_size=7)
    assert sum(kind == b"IDAT" for kind, _ in walk(data)) > 50
    np.testing.assert_array_equal(read_png16(data, BIG), pixels)


def test_ignores_ancillary_chunks_including_trns() -> None:
    pixels = smooth(6, 8, 3)
    extra = [(b"tRNS", struct.pack(">HHH", *pixels[0, 0])), (b"tEXt", b"Comment\x00hi"), (b"gAMA", b"\0" * 4)]
    back = read_png16(encode(pixels, [PAETH] * 6, extra=extra), BIG)
    np.testing.assert_array_equal(back, pixels)  # tRNS is ignored: still 3 channels, nothing masked


def test_a_large_paeth_image_reads_exactly() -> None:
    # Several wavefront bands' worth of diagonals (a per-byte Python loop would take tens of
    # seconds here; its speed is measured, not asserted: docs/api.md).
    pixels = smooth(512, 512, 3)
    back = read_png16(encode(pixels, [PAETH] * 512), BIG)
    np.testing.assert_array_equal(back, pixels)


# --- against Pillow ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "mode"), [(3, "RGB"), (4, "RGBA")])
def test_matches_pillow_high_bytes(channels: int, mode: str) -> None:
    # Pillow undoes the filters in C, then keeps each 16-bit sample's high byte.
    pixels = smooth(37, 45, channels)
    kinds = [PAETH, AVERAGE, PAETH, PAETH, AVERAGE, SUB, UP, NONE] * 4 + [PAETH] * 5
    data = encode(pixels, kinds)
    mine = read_png16(data, BIG)
    with Image.open(io.BytesIO(data)) as image:
        theirs = np.asarray(image.convert(mode))
    np.testing.assert_array_equal(theirs, pixels >> 8)  # the assumption about Pillow holds...
    np.testing.assert_array_equal(theirs, mine >> 8)  # ...and we agree with it
    np.testing.assert_array_equal(mine, pixels)


def test_matches_pillow_gray16_exactly() -> None:
    pixels = smooth(31, 26, 1)
    data = encode(pixels, [PAETH, AVERAGE, SUB, PAETH, UP, NONE, AVERAGE] * 4 + [PAETH] * 3)
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode in ("I;16", "I;16B", "I")
        theirs = np.asarray(image).astype(np.uint16)
    np.testing.assert_array_equal(read_png16(data, BIG)[:, :, 0], theirs)
    np.testing.assert_array_equal(theirs, pixels[:, :, 0])


@pytest.mark.parametrize("options", [{}, {"compress_level": 1}, {"optimize": True}])
def test_reads_pillow_written_gray16(options: dict[str, object]) -> None:
    pixels = smooth(48, 53, 1, seed=3)[:, :, 0]
    image = Image.fromarray(pixels)
    assert image.mode == "I;16"
    data = pillow_png(image, **options)
    assert is_png16(data)
    np.testing.assert_array_equal(read_png16(data, BIG), pixels[:, :, None])


def test_written_files_open_in_pillow() -> None:
    # Pillow keeps 16 bits of gray only; it opens gray + alpha as 8-bit RGBA.
    for channels, mode in ((1, "I;16"), (2, "RGBA"), (3, "RGB"), (4, "RGBA")):
        pixels = smooth(21, 34, channels)
        with Image.open(io.BytesIO(write_png16(pixels))) as image:
            assert image.size == (34, 21) and image.mode == mode
            theirs = np.asarray(image).reshape(21, 34, -1)
        expected = pixels if channels == 1 else pixels >> 8
        if channels == 2:
            expected = expected[:, :, [0, 0, 0, 1]]
        np.testing.assert_array_equal(theirs, expected)


def test_extra_chunks_in_order_with_valid_crcs() -> None:
    profile = zlib.compress(b"not really an ICC profile, but Pillow only inflates it" * 4)
    extra = [
        (b"iCCP", b"test profile\x00\x00" + profile),
        (b"pHYs", struct.pack(">IIB", 11811, 11811, 1)),  # 300 dpi
        (b"tEXt", b"Comment\x00made by test_png16"),
        (b"eXIf", b"MM\x00\x2a\x00\x00\x00\x08\x00\x00"),  # an empty big-endian TIFF directory
    ]
    pixels = smooth(12, 10, 3)
    data = write_png16(pixels, extra)
    kinds = [kind for kind, _ in walk(data)]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    assert kinds[1:5] == [kind for kind, _ in extra] and set(kinds[5:-1]) == {b"IDAT"}
    assert walk(data)[1:5] == extra
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert image.info["icc_profile"] == zlib.decompress(profile)
        assert round(image.info["dpi"][0]) == 300
        assert image.info["Comment"] == "made by test_png16"
        assert "exif" in image.info
    np.testing.assert_array_equal(read_png16(data, BIG), pixels)


# --- is_png16 ---------------------------------------------------------------------------------------


def test_is_png16() -> None:
    for channels in (1, 2, 3, 4):
        assert is_png16(write_png16(noise(2, 3, channels)))
    assert is_png16(SIGNATURE + ihdr(4, 4, interlace=1))  # header only: read_png16 says why it refuses
    eight_bit = pillow_png(Image.new("RGB", (4, 4)))
    assert not is_png16(eight_bit)
    assert not is_png16(SIGNATURE + ihdr(4, 4, color=3))  # 16-bit palette does not exist
    assert not is_png16(SIGNATURE + ihdr(4, 4, color=2, depth=8))
    jpeg = io.BytesIO()
    Image.new("RGB", (4, 4)).save(jpeg, format="JPEG")
    assert not is_png16(jpeg.getvalue())
    assert not is_png16(b"")
    assert not is_png16(b"garbage" * 10)
    whole = write_png16(noise(2, 2, 3))
    for cut in (4, 8, 16, 20, 24, 25, 32):
        assert not is_png16(whole[:cut])
    assert is_png16(whole[:33])


# --- errors -----------------------------------------------------------------------------------------


def test_rejects_non_16_bit() -> None:
    with pytest.raises(InvalidRequest, match="not a 16-bit"):
        read_png16(pillow_png(Image.new("RGB", (4, 4))), BIG)
    with pytest.raises(InvalidRequest, match="not a PNG"):
        read_png16(b"\xff\xd8\xff\xe0 a JPEG", BIG)


def test_truncated() -> None:
    data = encode(smooth(20, 20, 3), [PAETH] * 20, idat_size=300)
    iend = data.rindex(b"IEND") - 4
    for cut in (0, 10, 32):
        with pytest.raises(InvalidRequest, match="not a PNG"):
            read_png16(data[:cut], BIG)
    for cut in (33, 40, 45, 200, 341, 345, iend - 300, iend - 5):
        with pytest.raises(InvalidRequest, match="truncated"):
            read_png16(data[:cut], BIG)
    np.testing.assert_array_equal(read_png16(data[:iend], BIG), smooth(20, 20, 3))  # only IEND lost


def test_too_little_or_too_much_image_data() -> None:
    rows = bytes(1 + 4 * 2 * 3)  # one row of a 4-wide RGB16 image, filter None
    head = SIGNATURE + ihdr(4, 3)
    with pytest.raises(InvalidRequest, match="truncated: its image data holds 25 of the 75 bytes"):
        read_png16(head + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""), BIG)
    with pytest.raises(InvalidRequest, match="more than the 75 bytes"):
        read_png16(head + chunk(b"IDAT", zlib.compress(rows * 4)) + chunk(b"IEND", b""), BIG)
    with pytest.raises(InvalidRequest, match="image data is corrupt"):
        read_png16(head + chunk(b"IDAT", b"not zlib at all") + chunk(b"IEND", b""), BIG)
    with pytest.raises(InvalidRequest, match="truncated"):
        read_png16(head + chunk(b"IEND", b""), BIG)  # no IDAT at all


def test_crc_mismatch() -> None:
    data = bytearray(write_png16(smooth(8, 8, 3)))
    bad_ihdr = data.copy()
    bad_ihdr[20] ^= 1  # a width byte
    with pytest.raises(InvalidRequest, match="IHDR chunk fails its CRC"):
        read_png16(bytes(bad_ihdr), BIG)
    idat = data.index(b"IDAT")
    (length,) = struct.unpack_from(">I", data, idat - 4)
    for where in (idat + 10, idat + 4 + length):  # a data byte, a CRC byte
        bad_idat = data.copy()
        bad_idat[where] ^= 0x40
        with pytest.raises(InvalidRequest, match="IDAT chunk fails its CRC"):
            read_png16(bytes(bad_idat), BIG)


def test_bad_filter_byte() -> None:
    pixels = smooth(5, 4, 1)
    raw = forward_filter(pixels.astype(">u2").view(np.uint8).reshape(5, -1), 2, [PAETH] * 5)
    raw[3, 0] = 5
    data = (
        SIGNATURE + ihdr(4, 5, color=0) + chunk(b"IDAT", zlib.compress(raw.tobytes())) + chunk(b"IEND", b"")
    )
    with pytest.raises(InvalidRequest, match="row 3 has filter type 5"):
        read_png16(data, BIG)


def test_interlaced_refused_with_advice() -> None:
    data = write_png16(smooth(8, 8, 3))
    interlaced = SIGNATURE + ihdr(8, 8, interlace=1) + data[33:]
    with pytest.raises(
        InvalidRequest, match=r"interlaced .*16-bit PNGs are not supported.*without interlacing"
    ):
        read_png16(interlaced, BIG)
    with pytest.raises(InvalidRequest, match="IHDR is invalid"):
        read_png16(SIGNATURE + ihdr(8, 8, interlace=2) + data[33:], BIG)


def test_unknown_critical_chunk() -> None:
    data = write_png16(smooth(3, 3, 3))
    with pytest.raises(InvalidRequest, match="critical chunk 'ABCD'"):
        read_png16(data[:33] + chunk(b"ABCD", b"x") + data[33:], BIG)
    read_png16(data[:33] + chunk(b"abCD", b"x") + data[33:], BIG)  # ancillary: skipped


def test_too_many_pixels_checked_before_decompressing() -> None:
    # The IDAT is not even zlib: reaching it would say "corrupt", not "too large".
    data = SIGNATURE + ihdr(100_000, 100_000) + chunk(b"IDAT", b"\x00garbage") + chunk(b"IEND", b"")
    with pytest.raises(PayloadTooLarge, match="100000x100000"):
        read_png16(data, max_pixels=1024 * 1024)
    small = write_png16(noise(10, 10, 1))
    read_png16(small, max_pixels=100)
    with pytest.raises(PayloadTooLarge):
        read_png16(small, max_pixels=99)


def test_zlib_bomb_costs_no_memory() -> None:
    # 64 MiB of zeros (64 KB compressed) for a 64x64 gray image that needs 8256 bytes.
    deflate = zlib.compressobj(9)
    block = bytes(1 << 20)
    stream = b"".join([*(deflate.compress(block) for _ in range(64)), deflate.flush()])
    data = SIGNATURE + ihdr(64, 64, color=0) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")
    tracemalloc.start()
    try:
        with pytest.raises(InvalidRequest, match="decompresses to more than the 8256 bytes"):
            read_png16(data, BIG)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * len(data) + (1 << 20)
