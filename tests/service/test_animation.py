"""service.images.animation on its own: each format decodes with Pillow to the frames it was given (exactly
where the format is lossless, within a shared palette's error for colour GIFs), loops forever and
shows each frame for frame_ms."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.images.animation import encode_animation, frame_duration


def decoded(data: bytes, mode: str) -> tuple[Image.Image, np.ndarray, list[float]]:
    """The file, its frames (N, H, W, channels of `mode`) as int64 and each frame's duration."""
    image = Image.open(io.BytesIO(data))
    frames, durations = [], []
    for i in range(image.n_frames):
        image.seek(i)
        frames.append(np.asarray(image.convert(mode), dtype=np.int64).reshape(image.height, image.width, -1))
        durations.append(image.info["duration"])
    return image, np.stack(frames), durations


def colour_frames(count: int = 6, size: int = 24) -> np.ndarray:
    """(count, size, size, 3) uint8: a smooth colour image morphing into another, as a walk does."""
    y, x = np.mgrid[0:size, 0:size] / size
    a = np.stack([x, y, 1 - x * y], axis=-1)
    b = np.stack([1 - y, x * y, x], axis=-1)
    morph = np.stack([(1 - t) * a + t * b for t in np.linspace(0, 1, count)])
    return (morph * 255).round().astype(np.uint8)


@pytest.mark.parametrize(("fmt", "kind"), [("webp", "WEBP"), ("apng", "PNG"), ("gif", "GIF")])
def test_each_format_loops_with_every_frame_for_frame_ms(fmt: str, kind: str) -> None:
    frames = colour_frames()
    image, pixels, durations = decoded(encode_animation(frames, fmt, 70), "RGB")
    assert image.format == kind and image.n_frames == len(frames) and image.info["loop"] == 0
    assert durations == [70] * len(frames)
    if fmt == "gif":  # one shared 256-colour palette for all frames, no dithering
        error = np.abs(pixels - frames)
        assert error.mean() < 4 and error.max() < 48
    else:
        assert np.array_equal(pixels, frames)


@pytest.mark.parametrize("fmt", ["webp", "apng", "gif"])
def test_gray_frames_stay_gray_and_exact(fmt: str) -> None:
    frames = np.random.default_rng(1).integers(0, 256, (4, 16, 16, 1), dtype=np.uint8)
    _, pixels, _ = decoded(encode_animation(frames, fmt, 100), "RGB")
    assert np.array_equal(pixels, np.repeat(frames, 3, axis=-1))  # all 256 grays, in every format


@pytest.mark.parametrize("fmt", ["webp", "apng", "gif"])
def test_alpha_is_kept(fmt: str) -> None:
    frames = np.concatenate([colour_frames(3, 16), np.zeros((3, 16, 16, 1), np.uint8)], axis=-1)
    frames[:, :8, :, 3] = 255  # the top half opaque, the bottom transparent
    _, pixels, _ = decoded(encode_animation(frames, fmt, 100), "RGBA")
    opaque = frames[..., 3] == 255
    if fmt == "gif":  # one bit of alpha
        assert np.array_equal(pixels[..., 3] >= 128, opaque)
        assert np.abs(pixels[..., :3] - frames[..., :3])[opaque].mean() < 4
    else:  # every visible pixel (a fully transparent one's colour is not kept by WebP)
        assert np.array_equal(pixels[..., 3], frames[..., 3])
        assert np.array_equal(pixels[opaque], frames[opaque])


def test_gif_durations_are_in_hundredths_of_a_second() -> None:
    assert [frame_duration("gif", ms) for ms in (20, 24, 25, 70, 10000)] == [20, 20, 30, 70, 10000]
    assert frame_duration("webp", 25) == frame_duration("apng", 25) == 25
    _, _, durations = decoded(encode_animation(colour_frames(3), "gif", frame_duration("gif", 25)), "RGB")
    assert durations == [30, 30, 30]


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown animation format 'mp4'"):
        encode_animation(colour_frames(2), "mp4", 100)
    with pytest.raises(ValueError, match="uint8"):
        encode_animation(colour_frames(2).astype(np.float32), "gif", 100)
