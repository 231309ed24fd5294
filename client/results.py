"""What the service's answers become: the results the clients return (plain frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GeneratedImage:
    seed: int | None  # None: made from a given w (style models)
    label: int | None
    label_name: str | None
    data: bytes  # the image file (or .npy) bytes
    noise_seed: int | None = None  # style models: the noise images' seed (None: zero noise)
    w: bytes | None = None  # style models, with return_latents: the image's ws as .npy bytes


@dataclass(frozen=True)
class GenerateResult:
    model: str
    version: int
    format: str
    height: int
    width: int
    channels: int
    images: list[GeneratedImage] = field(default_factory=list)


@dataclass(frozen=True)
class WalkResult:
    model: str
    version: int
    format: str
    from_seed: int  # a loop's: its first seed (to_seed too: it closes)
    to_seed: int
    method: str
    label: int | None
    label_name: str | None
    positions: list[float]  # t of each image in its segment: 0 is its first seed's image, 1 the next's
    images: list[bytes]  # the image files (or .npy), in walk order
    seeds: list[int] = field(default_factory=list)  # the seeds walked through: [from, to] or the loop's
    segments: list[int] = field(default_factory=list)  # each image's segment: k goes from seeds[k] on


@dataclass(frozen=True)
class AnimationResult:
    """A walk as one looping animated file (walk with animation=...)."""

    data: bytes  # the file: WebP, GIF or APNG
    media_type: str  # image/webp, image/gif or image/apng
    model: str
    version: int
    frames: int  # frames made (a file stores identical consecutive ones as one longer frame)
    frame_ms: int  # each frame's duration in the file (GIF: to 10 ms)
    seeds: list[int]  # the seeds walked through: [from, to] or the loop's
    label: int | None


@dataclass(frozen=True)
class MixResult:
    """A style-mixing grid: cells[r][c] has row r's styles in `layers_from_row`, column c's
    elsewhere."""

    model: str
    version: int
    format: str
    crossover: str | int
    layers_from_row: list[int]
    rows: list[GeneratedImage]
    columns: list[GeneratedImage]
    cells: list[list[GeneratedImage]]
    grid: bytes | None  # the whole figure, when asked for


@dataclass(frozen=True)
class UpscaleResult:
    data: bytes
    media_type: str
    model: str
    version: int
    input_size: tuple[int, int]  # (width, height)
    output_size: tuple[int, int]
    models: list[str] = field(default_factory=list)  # every model run, "name@version"
    resize: str = "none"  # the resize after the model: "none" or e.g. "lanczos 240x180 to 300x225"
    crop: str | None = None  # fit cover's window of the resized image, "WxH+LEFT+TOP"
    detail: float | None = None  # the detail model's blend weight, when detail was asked for
    bit_depth: int = 8  # 16: a 16-bit PNG input answered as PNG
