"""/upscale's output sizes, detail blend, metadata and 16-bit PNGs, against a real server."""

from __future__ import annotations

import asyncio
import io
import itertools
import struct
import zlib
from collections.abc import Callable

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import skimage.data
from PIL import Image, ImageCms, ImageOps, TiffImagePlugin

from contract.provenance_reader import read_provenance
from model_repository.tiling import pad_to_tile
from service.images.imaging import orient
from service.images.png16 import read_png16, write_png16
from tests.live_server import REPO, Server

PHOTO = skimage.data.chelsea()[60:150, 100:220]  # 120x90 RGB: one tile of every bundled model


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def upscale(server: Server, data: bytes, content_type: str = "image/png", **params: object) -> httpx.Response:
    r = httpx.post(
        f"{server.url}/upscale",
        content=data,
        params={k: str(v) for k, v in params.items()},
        headers={"content-type": content_type},
        timeout=120,
    )
    return r


def pixels(r: httpx.Response) -> np.ndarray:
    assert r.status_code == 200, r.text
    return np.asarray(Image.open(io.BytesIO(r.content)))


def model_output(name: str, image: np.ndarray) -> np.ndarray:
    """The bundled model's own output for an image of one tile (mirrored out to it, cropped back)."""
    sess = ort.InferenceSession(
        str(REPO / "models" / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    h, w = image.shape[:2]
    scale = 2 if name.endswith("x2") else 4
    return sess.run(None, {"image": pad_to_tile(image, 128)[None]})[0][0][: h * scale, : w * scale]


# --- any output size ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "size", "models", "resize", "crop"),
    [
        ({"scale": 2.5}, (300, 225), "srresnet-x2@1", "lanczos 240x180 to 300x225", None),
        ({"scale": 3}, (360, 270), "srresnet-x2@1", "lanczos 240x180 to 360x270", None),
        ({"scale": 2}, (240, 180), "srresnet-x2@1", "none", None),
        ({"scale": 4}, (480, 360), "srresnet-x4@1", "none", None),
        ({"scale": 1.5}, (180, 135), "srresnet-x2@1", "lanczos 240x180 to 180x135", None),
        ({"width": 300}, (300, 225), "srresnet-x2@1", "lanczos 240x180 to 300x225", None),
        ({"height": 360}, (480, 360), "srresnet-x4@1", "none", None),
        ({"width": 300, "height": 300}, (300, 225), "srresnet-x2@1", "lanczos 240x180 to 300x225", None),
        (
            {"width": 300, "height": 300, "fit": "cover"},
            (300, 300),
            "srresnet-x2@1",
            "lanczos 240x180 to 400x300",
            "300x300+50+0",
        ),
        (
            {"width": 300, "height": 200, "fit": "exact"},
            (300, 200),
            "srresnet-x2@1",
            "lanczos 240x180 to 300x200",
            None,
        ),
        (
            {"scale": 3, "model": "srresnet-x4"},
            (360, 270),
            "srresnet-x4@1",
            "lanczos 480x360 to 360x270",
            None,
        ),
    ],
)
def test_any_output_size_and_the_path_it_took(
    server: Server,
    params: dict[str, object],
    size: tuple[int, int],
    models: str,
    resize: str,
    crop: str | None,
) -> None:
    r = upscale(server, png(PHOTO), **params)
    out = pixels(r)
    assert (out.shape[1], out.shape[0]) == size
    assert r.headers["x-output-size"] == "{}x{}".format(*size) and r.headers["x-input-size"] == "120x90"
    assert r.headers["x-models"] == models and r.headers["x-resize"] == resize
    assert r.headers.get("x-crop") == crop


def test_a_resized_answer_is_the_models_output_resized(server: Server) -> None:
    """scale 3: the x2 model's own output, then Lanczos to 360x270 in float (no other processing)."""
    out = pixels(upscale(server, png(PHOTO), scale=3)).astype(np.float64)
    x2 = model_output("srresnet-x2", PHOTO).astype(np.float32)
    expected = np.stack(
        [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(x2[:, :, c]), "F").resize(
                    (360, 270), Image.Resampling.LANCZOS, reducing_gap=None
                )
            )
            for c in range(3)
        ],
        axis=2,
    )
    assert np.abs(out - np.clip(expected, 0, 255)).max() <= 0.5 + 1e-3  # rounded once


def test_the_default_is_unchanged_and_sizes_out_of_range_are_refused(server: Server) -> None:
    r = upscale(server, png(PHOTO))  # no size: the first model by name at its own factor, as before
    assert r.headers["x-models"] == "srgan-x4@1" and r.headers["x-resize"] == "none"
    for params, message in [
        ({"scale": 5}, "an upscale enlarges by 1 to 4"),
        ({"scale": 0.5}, "greater than or equal to 1"),
        ({"width": 100}, "width asks for a factor of 0.833 of the 120x90 input"),
        ({"width": 300, "fit": "cover"}, "fit applies when both width and height are given"),
        ({"scale": 2, "height": 200}, "either scale, or width and/or height"),
        ({"width": 300, "height": 300, "fit": "stretch"}, "contain"),
        ({"detail": 1.5}, "less than or equal to 1"),
    ]:
        r = upscale(server, png(PHOTO), **params)
        assert r.status_code in (400, 422) and message in r.text, (params, r.text)


# --- detail ------------------------------------------------------------------------------------


def test_detail_blends_the_familys_faithful_and_detail_models(server: Server) -> None:
    faithful = model_output("srresnet-x4", PHOTO).astype(np.float64)
    sharp = model_output("srgan-x4", PHOTO).astype(np.float64)
    assert np.abs(faithful - sharp).mean() > 1  # the two differ, so the blend is seen
    for detail in (0.0, 0.3, 1.0):
        r = upscale(server, png(PHOTO), detail=detail)
        expected = faithful + detail * (sharp - faithful)
        assert np.abs(pixels(r) - expected).max() <= 1, detail  # one rounding of the float blend
        assert r.headers["x-detail"] == f"{detail:g}"
    assert r.headers["x-models"] == "srgan-x4@1"  # detail 1: the detail model alone
    r = upscale(server, png(PHOTO), detail=0.3)
    assert r.headers["x-models"] == "srresnet-x4@1, srgan-x4@1" and r.headers["x-model"] == "srresnet-x4"
    # any size with detail: the family's path, resized
    r = upscale(server, png(PHOTO), detail=0.5, scale=2.5)
    assert pixels(r).shape == (225, 300, 3) and r.headers["x-resize"] == "lanczos 480x360 to 300x225"
    # a model in no family has no detail model
    r = upscale(server, png(PHOTO), detail=0.5, model="srresnet-x2")
    assert r.status_code == 400 and "in no family" in r.text


def test_a_family_without_its_detail_model_served_is_refused(make_server: Callable[..., Server]) -> None:
    srv = make_server(["srresnet-x4", "srresnet-x2"])
    r = upscale(srv, png(PHOTO), detail=0.5, model="srresnet-x4")
    assert r.status_code == 400 and "whose detail model is not served" in r.text
    r = upscale(srv, png(PHOTO), detail=0.5)
    assert r.status_code == 400 and "no served upscaler is in one" in r.text


def test_requests_with_different_detail_share_batches(make_server: Callable[..., Server]) -> None:
    """The blend weight is not a model input: four requests, each one tile and its own detail,
    run in fewer batches than four on each model."""
    srv = make_server(
        ["srresnet-x4", "srgan-x4"],
        max_batch_tiles=4,
        concurrent_batches=1,
        max_batch_delay_ms=200,
        default_deadline_ms=300_000,
    )
    details = (0.2, 0.4, 0.6, 0.8)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=300) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        f"{srv.url}/upscale",
                        content=png(PHOTO),
                        params={"detail": str(d)},
                        headers={"content-type": "image/png"},
                    )
                    for d in details
                )
            )

    answers = asyncio.run(burst())
    assert [r.headers["x-detail"] for r in answers] == [f"{d:g}" for d in details]
    outputs = [pixels(r).astype(np.int16) for r in answers]
    assert all(np.abs(a - b).mean() > 0 for a, b in itertools.pairwise(outputs))
    for model in ("srresnet-x4", "srgan-x4"):
        assert srv.metric("gan_batch_size_units_sum", model=model) == len(details)
        assert srv.metric("gan_batch_size_units_count", model=model) < len(details)


# --- metadata ----------------------------------------------------------------------------------

GPS_XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" '
    b'xmlns:dc="http://purl.org/dc/elements/1.1/" '
    b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6" '
    b'exif:GPSLatitude="48,51.5N" exif:GPSLongitude="2,17.7E"><dc:creator>Test Camera User</dc:creator>'
    b"<exif:GPSAltitude>35/1</exif:GPSAltitude></rdf:Description></rdf:RDF></x:xmpmeta>"
)


def camera_jpeg() -> tuple[bytes, np.ndarray]:
    """A camera-style JPEG: stored sideways (orientation 6: rotate 90 degrees clockwise to view),
    72 dpi, Make/Model/DateTime, an EXIF block with the pixel dimensions, a GPS block, an sRGB ICC
    profile and XMP with GPS properties. Returns the file and the upright pixels."""
    stored = np.ascontiguousarray(PHOTO[:80, :60])  # 60x80 stored, 80x60 upright
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x010F], exif[0x0110], exif[0x0132] = "TestCam", "Model 1", "2026:11:30 12:00:00"
    exif[0x0112] = 6
    exif[0x011A], exif[0x011B], exif[0x0128] = 72.0, 72.0, 2
    exif_ifd = exif.get_ifd(0x8769)
    exif_ifd[0xA002], exif_ifd[0xA003] = 60, 80
    exif_ifd[0x829A] = 1 / 125  # exposure time
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (48.0, 51.0, 30.0), "E", (2.0, 17.0, 42.0)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    image.save(
        buffer, format="JPEG", quality=95, exif=exif.tobytes(), icc_profile=icc, dpi=(72, 72), xmp=GPS_XMP
    )
    upright = np.asarray(Image.fromarray(stored).transpose(Image.Transpose.ROTATE_270))
    return buffer.getvalue(), upright


def test_camera_metadata_round_trips_with_gps_dropped_by_default(server: Server) -> None:
    data, upright = camera_jpeg()
    source = Image.open(io.BytesIO(data))
    r = upscale(server, data, "image/jpeg", model="srresnet-x2")
    out = Image.open(io.BytesIO(r.content))
    assert out.size == (160, 120) and upright.shape == (60, 80, 3)  # upright, then x2
    exif = out.getexif()
    assert exif[0x0112] == 1  # the pixels are upright: orientation reset
    assert (exif[0x010F], exif[0x0110], exif[0x0132]) == ("TestCam", "Model 1", "2026:11:30 12:00:00")
    assert float(exif[0x011A]) == float(exif[0x011B]) == 144.0  # twice the pixels per inch: same print size
    assert out.info["dpi"] == pytest.approx((144, 144), abs=0.5)
    assert exif.get_ifd(0x8769)[0xA002] == 160 and exif.get_ifd(0x8769)[0xA003] == 120
    assert float(exif.get_ifd(0x8769)[0x829A]) == pytest.approx(1 / 125)
    assert not exif.get_ifd(0x8825) and 0x8825 not in exif  # GPS gone
    assert out.info["icc_profile"] == source.info["icc_profile"]
    xmp = out.info["xmp"]
    assert b"Test Camera User" in xmp and b"GPS" not in xmp  # XMP kept, its GPS properties dropped
    assert b'tiff:Orientation="1"' in xmp  # XMP's copy of the orientation reset too


def test_strip_none_keeps_gps_and_strip_all_keeps_only_the_colour_profile(server: Server) -> None:
    data, _ = camera_jpeg()
    kept = Image.open(
        io.BytesIO(upscale(server, data, "image/jpeg", model="srresnet-x2", strip="none").content)
    )
    gps = kept.getexif().get_ifd(0x8825)
    assert gps[1] == "N" and [float(v) for v in gps[2]] == [48.0, 51.0, 30.0]
    assert b"GPSLatitude" in kept.info["xmp"]
    bare = Image.open(
        io.BytesIO(upscale(server, data, "image/jpeg", model="srresnet-x2", strip="all").content)
    )
    assert not len(bare.getexif()) and "xmp" not in bare.info
    assert bare.info["icc_profile"] == kept.info["icc_profile"]
    # metadata into another format: JPEG in, PNG and WebP out
    for fmt in ("png", "webp"):
        out = Image.open(
            io.BytesIO(upscale(server, data, "image/jpeg", model="srresnet-x2", format=fmt).content)
        )
        exif = out.getexif()
        assert exif[0x010F] == "TestCam" and 0x8825 not in exif, fmt
        assert out.info["icc_profile"] and b"Test Camera User" in (
            out.info.get("xmp") or out.info.get("XML:com.adobe.xmp", "").encode()
        ), fmt


# --- 16-bit ------------------------------------------------------------------------------------


def test_16_bit_png_is_upscaled_to_16_bits(server: Server) -> None:
    """A smooth 16-bit gradient: the answer is 16-bit, holds far more than 256 levels, and its
    high bytes are within a step of the 8-bit answer for the same image."""
    ramp = np.linspace(0, 1, 80)[None, :, None] * np.linspace(0.2, 1, 60)[:, None, None]
    wide = np.round(ramp * np.array([65535, 50000, 30000]) + 300).astype(np.uint16)  # (60, 80, 3)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    chunks = [(b"iCCP", b"sRGB\x00\x00" + zlib.compress(icc)), (b"pHYs", struct.pack(">IIB", 2835, 2835, 1))]
    r = upscale(server, write_png16(wide, chunks), model="srresnet-x2")
    assert r.status_code == 200 and r.headers["x-bit-depth"] == "16"
    kept = Image.open(io.BytesIO(r.content))  # the 16-bit file's metadata: profile kept, dpi doubled
    assert kept.info["icc_profile"] == icc and kept.info["dpi"] == pytest.approx((144, 144), abs=0.5)
    out = read_png16(r.content, 10**7)
    assert out.shape == (120, 160, 3) and out.dtype == np.uint16
    assert len(np.unique(out[:, :, 0])) > 2000
    narrow = ((wide.astype(np.uint32) + 128) // 257).astype(np.uint8)
    eight = pixels(upscale(server, png(narrow), model="srresnet-x2")).astype(np.int32)
    assert np.abs(out.astype(np.int32) / 257 - eight).max() <= 1.5
    # asked for another format: 8 bits
    r = upscale(server, write_png16(wide), model="srresnet-x2", format="webp")
    assert r.headers["x-bit-depth"] == "8" and Image.open(io.BytesIO(r.content)).mode == "RGB"
    # 16-bit gray with alpha: 16-bit RGBA (gray + alpha goes out as RGBA), alpha kept at 16 bits
    gray_alpha = np.stack([wide[:, :, 0], wide[:, :, 1]], axis=2)
    out = read_png16(upscale(server, write_png16(gray_alpha), model="srresnet-x2", scale=3).content, 10**7)
    assert out.shape == (180, 240, 4) and len(np.unique(out[:, :, 3])) > 1000


def test_a_generated_images_record_is_not_carried_into_its_upscale(server: Server) -> None:
    """The record says how the small image was made: on the upscaled file it would be false."""
    for fmt in ("jpeg", "webp"):
        small = httpx.post(
            f"{server.url}/generate",
            json={"model": "digits", "seed": 3, "format": fmt},
            headers={"accept": f"image/{fmt}"},
            timeout=60,
        )
        assert read_provenance(small.content) is not None
        big = upscale(server, small.content, f"image/{fmt}", model="srresnet-x2")
        assert big.status_code == 200 and read_provenance(big.content) is None, fmt


# --- hostile and unusual metadata ----------------------------------------------------------------


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with(pixels: np.ndarray, *chunks: tuple[bytes, bytes]) -> bytes:
    """An 8-bit PNG of `pixels` with extra chunks before its pixels."""
    plain = png(pixels)
    head = plain[: 8 + 25]  # signature and IHDR
    return head + b"".join(chunk(kind, data) for kind, data in chunks) + plain[8 + 25 :]


def xmp_png(xmp: bytes) -> bytes:
    return png_with(PHOTO[:40, :40], (b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp))


def test_a_png_whose_pixels_are_corrupt_is_refused(server: Server) -> None:
    header = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"\x00" * 32) + chunk(b"IEND", b"")
    r = upscale(server, data)
    assert r.status_code == 400 and "corrupt" in r.text


def test_metadata_that_cannot_be_carried_is_dropped_and_said(server: Server) -> None:
    # an XMP packet too large for a JPEG's one segment: kept in a PNG, dropped from a JPEG
    large = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><!--' + b"x" * 70_000 + b"--></x:xmpmeta>"
    r = upscale(server, xmp_png(large), model="srresnet-x2", format="jpeg")
    assert (
        r.status_code == 200 and "xmp (over the 65504 bytes a JPEG holds)" in r.headers["x-metadata-dropped"]
    )
    r = upscale(server, xmp_png(large), model="srresnet-x2")
    assert (
        "x-metadata-dropped" not in r.headers
        and len(Image.open(io.BytesIO(r.content)).info["XML:com.adobe.xmp"]) > 70_000
    )
    # a CMYK JPEG's profile does not describe the RGB answer
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    cmyk_profile = srgb[:16] + b"CMYK" + srgb[20:]
    buffer = io.BytesIO()
    Image.fromarray(PHOTO[:40, :40]).convert("CMYK").save(buffer, "JPEG", icc_profile=cmyk_profile)
    r = upscale(server, buffer.getvalue(), "image/jpeg", model="srresnet-x2")
    assert (
        r.status_code == 200
        and "icc (a CMYK profile does not describe RGB pixels)" in r.headers["x-metadata-dropped"]
    )
    assert "icc_profile" not in Image.open(io.BytesIO(r.content)).info


def test_nonsense_resolutions_are_dropped_not_failed_on(server: Server) -> None:
    image = Image.fromarray(PHOTO[:40, :40])
    exif = image.getexif()
    exif[0x011A], exif[0x011B] = TiffImagePlugin.IFDRational(0, 0), TiffImagePlugin.IFDRational(72, 1)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes())
    r = upscale(server, buffer.getvalue(), "image/jpeg", model="srresnet-x2")
    assert r.status_code == 200
    kept = Image.open(io.BytesIO(r.content)).getexif()
    assert 0x011A not in kept and float(kept[0x011B]) == 144.0
    huge = png_with(PHOTO[:40, :40], (b"pHYs", struct.pack(">IIB", 4_000_000_000, 4_000_000_000, 1)))
    for fmt in ("png", "jpeg"):  # 4e9 per metre, doubled, fits no resolution field
        r = upscale(server, huge, model="srresnet-x2", format=fmt)
        assert r.status_code == 200 and "dpi" not in Image.open(io.BytesIO(r.content)).info, fmt


def test_gps_is_removed_under_any_prefix_and_a_malformed_packet_is_dropped_whole(server: Server) -> None:
    other_prefix = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description xmlns:e="http://ns.adobe.com/exif/1.0/" e:GPSLatitude="48,51.5N" '
        b'e:ExposureTime="1/8">'
        b"<e:GPSAltitude>35/1</e:GPSAltitude></rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    xmp = Image.open(io.BytesIO(upscale(server, xmp_png(other_prefix), model="srresnet-x2").content)).info[
        "XML:com.adobe.xmp"
    ]
    assert "GPS" not in xmp and 'e:ExposureTime="1/8"' in xmp
    # a hostile packet: a megabyte of whitespace and thousands of GPS elements that never close
    # (a backtracking pattern would take hours over it); it cannot be cleaned, so it is dropped
    hostile = b"<x:xmpmeta>" + b" exif:GPS" + b" " * 1_000_000 + b"<exif:GPSLatitude>" * 20_000
    r = upscale(server, xmp_png(hostile), model="srresnet-x2")
    assert r.status_code == 200 and "xmp (a GPS property" in r.headers["x-metadata-dropped"]
    assert "XML:com.adobe.xmp" not in Image.open(io.BytesIO(r.content)).info


def test_an_interlaced_16_bit_png_is_served_at_8_bits(server: Server) -> None:
    """A 1x1 image's interlaced data is its plain data, so the interlace flag alone makes one."""
    plain = write_png16(np.full((1, 1, 3), 40000, np.uint16))
    header = bytearray(plain[16:29])
    header[12] = 1  # Adam7
    interlaced = plain[:8] + chunk(b"IHDR", bytes(header)) + plain[33:]
    r = upscale(server, interlaced, model="srresnet-x2")
    assert r.status_code == 200 and r.headers["x-bit-depth"] == "8"
    assert pixels(r).shape == (2, 2, 3) and abs(int(pixels(r)[0, 0, 0]) - 40000 // 257) <= 2


def test_detail_model_pins_the_partners_version(server: Server) -> None:
    r = upscale(server, png(PHOTO), model="srresnet-x4@1", detail=0.5, detail_model="srgan-x4@1")
    assert r.status_code == 200 and r.headers["x-models"] == "srresnet-x4@1, srgan-x4@1"
    r = upscale(server, png(PHOTO), model="srgan-x4@1", detail=0.5, detail_model="srresnet-x4@1")
    assert r.status_code == 200 and r.headers["x-models"] == "srresnet-x4@1, srgan-x4@1"
    for params, message in [
        (
            {"model": "srresnet-x4", "detail": 0.5, "detail_model": "srresnet-x2"},
            "is not the detail model of",
        ),
        ({"model": "srresnet-x4", "detail_model": "srgan-x4"}, "give model and detail too"),
        ({"detail": 0.5, "detail_model": "srgan-x4"}, "give model and detail too"),
        ({"model": "srresnet-x4", "detail": 0.5, "detail_model": "srgan-x4@7"}, "has no version 7"),
    ]:
        r = upscale(server, png(PHOTO), **params)
        assert r.status_code in (400, 404) and message in r.text, (params, r.text)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_is_pillows_exif_transpose(orientation: int) -> None:
    """service.images.imaging.orient, the one mapping of EXIF orientations for every decode path."""
    stored = np.arange(5 * 7 * 2, dtype=np.uint8).reshape(5, 7, 2)
    image = Image.fromarray(stored[:, :, 0])
    exif = image.getexif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", exif=exif.tobytes())
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buffer.getvalue()))))
    assert np.array_equal(orient(stored[:, :, 0], orientation), upright)
    assert np.array_equal(orient(stored, orientation)[:, :, 0], upright)  # with channels alike
