"""A walk's frames -> one animated image file (WebP, GIF or APNG) that loops forever, with Pillow
alone. Runs on the encode pool, never on the event loop.

WebP (lossless) and APNG keep every visible pixel. GIF holds at most 256 colours per frame: each
colour frame gets its own adaptive palette (octree), without dithering, and pixels below half
opacity become transparent. The walk's provenance record goes into each format's metadata
(service.images.stamping). Identical consecutive frames are stored as one frame of their summed
duration, so a file may hold fewer frames than were made. Why: docs/architecture.md.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from contract.media import ANIMATIONS
from service.images.stamping import animation_options

GIF_TRANSPARENT = 255  # the palette index of a GIF's transparent pixels (colours get 0-254)


def frame_duration(fmt: str, frame_ms: int) -> int:
    """The duration each frame gets in a file of `fmt`: GIF keeps hundredths of a second."""
    return max(10, (frame_ms + 5) // 10 * 10) if fmt == "gif" else frame_ms


def encode_animation(frames: np.ndarray, fmt: str, frame_ms: int, record: str | None = None) -> bytes:
    """frames (N, H, W, C) uint8, C in 1, 3, 4 -> the bytes of one looping animation of `fmt`
    (webp, gif, apng), each frame shown for frame_duration(fmt, frame_ms) ms, carrying `record`
    (a provenance record) when given."""
    if fmt not in ANIMATIONS:
        raise ValueError(f"unknown animation format {fmt!r}; known: {', '.join(ANIMATIONS)}")
    frames = np.ascontiguousarray(frames)  # a style model's rows are a view into a structured array
    if frames.ndim != 4 or frames.shape[3] not in (1, 3, 4) or frames.dtype != np.uint8 or not len(frames):
        raise ValueError(f"frames must be (N, H, W, C) uint8 with N >= 1, C in 1, 3, 4; got {frames.shape}")
    options: dict[str, object] = {"save_all": True, "duration": frame_duration(fmt, frame_ms), "loop": 0}
    if fmt == "gif":
        file_format, images = "GIF", _gif_frames(frames)
        if frames.shape[3] == 4:
            # restore to the background after each frame: a transparent pixel must not show the last
            options |= {"transparency": GIF_TRANSPARENT, "disposal": 2}
    else:
        images = [Image.fromarray(frame[:, :, 0] if frame.shape[2] == 1 else frame) for frame in frames]
        file_format = "WEBP" if fmt == "webp" else "PNG"  # Pillow writes APNG as PNG with save_all
        if fmt == "webp":
            options |= {"lossless": True}
    if record is not None:
        options |= animation_options(fmt, record)
    buffer = io.BytesIO()
    images[0].save(buffer, format=file_format, append_images=images[1:], **options)
    return buffer.getvalue()


def _gif_frames(frames: np.ndarray) -> list[Image.Image]:
    """(N, H, W, C) uint8 -> N gray or palette images."""
    _, h, w, c = frames.shape
    if c == 1:
        return [Image.fromarray(frame[:, :, 0]) for frame in frames]  # 256 grays: exact
    colours = GIF_TRANSPARENT if c == 4 else 256
    images = []
    for frame in frames:
        image = Image.fromarray(np.ascontiguousarray(frame[..., :3])).quantize(
            colours, Image.Quantize.FASTOCTREE
        )
        if c == 4:
            indices = np.asarray(image).copy()  # (H, W) palette indices, all below GIF_TRANSPARENT
            indices[frame[..., 3] < 128] = GIF_TRANSPARENT
            palette = (image.getpalette() or [])[: 3 * GIF_TRANSPARENT]
            image = Image.frombytes("P", (w, h), indices.tobytes())
            image.putpalette([*palette, *[0] * (3 * (GIF_TRANSPARENT + 1) - len(palette))])
        images.append(image)
    return images
