"""The service's API as requests and answers, with no I/O: a builder per call that makes its
Request, and a parser that makes its answer (or a streamed answer's lines) a result. Both clients
(client.blocking, client.asynchronous) send what these build and return what these parse.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Unpack

import httpx

from client.files import format_of_bytes, sniff_format
from client.results import (
    AnimationResult,
    GeneratedImage,
    GenerateResult,
    MixResult,
    UpscaleResult,
    WalkResult,
)
from contract.endpoints import UPSCALE, UpscaleOptions
from contract.media import ANIMATION_MEDIA_TYPES, JSON, MEDIA_TYPES  # the server's own tables (stdlib only)

Progress = Callable[[int, int], None]  # a streamed upscale's (tiles done, tiles)
NDJSON = "application/x-ndjson"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    json: dict[str, Any] | None = None
    content: bytes | None = None
    params: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def arguments(self) -> dict[str, Any]:
        """httpx's arguments for it (Client.request, Client.build_request)."""
        return {
            "method": self.method,
            "url": self.path,
            "json": self.json,
            "content": self.content,
            "params": self.params,
            "headers": self.headers,
        }


def generate_request(
    n: int | None = None,
    *,
    model: str | None = None,
    seed: int | None = None,
    seeds: list[int] | None = None,
    labels: int | str | list[int | str] | None = None,
    truncation: float | None = None,
    truncation_psi: float | None = None,
    noise_seed: int | None = None,
    noise: str | None = None,
    ws: list[bytes] | None = None,
    return_latents: bool = False,
    format: str = "png",
    deadline_ms: int | None = None,
) -> Request:
    """truncation_psi, noise_seed, noise ("random" | "const"), ws (.npy bytes, one per image,
    instead of seeds) and return_latents are for style models."""
    body: dict[str, Any] = {"format": format}
    for key, value in (
        ("model", model),
        ("n", n),
        ("seed", seed),
        ("seeds", seeds),
        ("labels", labels),
        ("truncation", truncation),
        ("truncation_psi", truncation_psi),
        ("noise_seed", noise_seed),
        ("noise", noise),
        ("ws", _encode_ws(ws)),
    ):
        if value is not None:
            body[key] = value
    if return_latents:
        body["return_latents"] = True
    return Request("POST", "/generate", json=body, headers=_deadline(deadline_ms))


def parse_generate(response: httpx.Response) -> GenerateResult:
    body = response.json()
    return GenerateResult(
        model=body["model"],
        version=int(body["version"]),
        format=body["format"],
        height=int(body["height"]),
        width=int(body["width"]),
        channels=int(body["channels"]),
        images=[image_of(i) for i in body["images"]],
    )


def image_of(item: dict[str, Any]) -> GeneratedImage:
    w = item.get("w")
    return GeneratedImage(
        seed=item["seed"],
        label=item["label"],
        label_name=item["label_name"],
        data=base64.b64decode(item["data"]),
        noise_seed=item.get("noise_seed"),
        w=None if w is None else base64.b64decode(w),
    )


def _encode_ws(ws: list[bytes] | None) -> list[str] | None:
    return None if ws is None else [base64.b64encode(w).decode("ascii") for w in ws]


def mix_request(
    row_seeds: list[int] | None = None,
    col_seeds: list[int] | None = None,
    *,
    row_ws: list[bytes] | None = None,
    col_ws: list[bytes] | None = None,
    crossover: str | int = "coarse",
    model: str | None = None,
    label: int | str | None = None,
    truncation_psi: float | None = None,
    noise_seed: int | None = None,
    noise: str | None = None,
    grid: bool = False,
    return_latents: bool = False,
    format: str = "png",
    deadline_ms: int | None = None,
) -> Request:
    body: dict[str, Any] = {"crossover": crossover, "format": format, "grid": grid}
    for key, value in (
        ("model", model),
        ("row_seeds", row_seeds),
        ("col_seeds", col_seeds),
        ("row_ws", _encode_ws(row_ws)),
        ("col_ws", _encode_ws(col_ws)),
        ("label", label),
        ("truncation_psi", truncation_psi),
        ("noise_seed", noise_seed),
        ("noise", noise),
    ):
        if value is not None:
            body[key] = value
    if return_latents:
        body["return_latents"] = True
    return Request("POST", "/mix", json=body, headers=_deadline(deadline_ms))


def parse_mix(response: httpx.Response) -> MixResult:
    body = response.json()
    grid = body.get("grid")
    return MixResult(
        model=body["model"],
        version=int(body["version"]),
        format=body["format"],
        crossover=body["crossover"],
        layers_from_row=list(body["layers_from_row"]),
        rows=[image_of(i) for i in body["rows"]],
        columns=[image_of(i) for i in body["columns"]],
        cells=[[image_of(i) for i in row] for row in body["cells"]],
        grid=None if grid is None else base64.b64decode(grid),
    )


def walk_request(
    from_seed: int | None = None,
    to_seed: int | None = None,
    steps: int = 8,
    *,
    seeds: list[int] | None = None,
    model: str | None = None,
    label: int | str | None = None,
    truncation: float | None = None,
    truncation_psi: float | None = None,
    noise_seed: int | None = None,
    noise: str | None = None,
    method: str | None = None,
    format: str | None = None,
    animation: str | None = None,
    frame_ms: int | None = None,
    deadline_ms: int | None = None,
) -> Request:
    """from_seed and to_seed, or seeds (a loop back to the first, `steps` images per seed).
    method: None for the model's own (slerp in z; a style model walks in w, by lerp). animation
    ("webp", "gif", "apng"): one animated file instead of JSON, each frame frame_ms long; format
    is then left out (it names the JSON answer's frame files)."""
    body: dict[str, Any] = {"steps": steps}
    if animation is None:
        body["format"] = format or "png"
    for key, value in (
        ("model", model),
        ("from_seed", from_seed),
        ("to_seed", to_seed),
        ("seeds", seeds),
        ("label", label),
        ("truncation", truncation),
        ("truncation_psi", truncation_psi),
        ("noise_seed", noise_seed),
        ("noise", noise),
        ("method", method),
        ("format", format),
        ("animation", animation),
        ("frame_ms", frame_ms),
    ):
        if value is not None:
            body[key] = value
    headers = _deadline(deadline_ms)
    if animation is not None:
        headers["Accept"] = ANIMATION_MEDIA_TYPES.get(animation, "*/*")
    return Request("POST", "/walk", json=body, headers=headers)


def parse_walk(response: httpx.Response) -> WalkResult | AnimationResult:
    """The JSON answer as a WalkResult; an animated one (any other media type) as an AnimationResult."""
    media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != JSON:
        h = response.headers
        label = h.get("x-label")
        return AnimationResult(
            data=response.content,
            media_type=media,
            model=h.get("x-model", ""),
            version=int(h.get("x-model-version", "0")),
            frames=int(h.get("x-frames", "0")),
            frame_ms=int(h.get("x-frame-ms", "0")),
            seeds=[int(s) for s in h.get("x-seeds", "").split(",") if s],
            label=None if label is None else int(label),
        )
    body = response.json()
    return WalkResult(
        model=body["model"],
        version=int(body["version"]),
        format=body["format"],
        from_seed=int(body["from_seed"]),
        to_seed=int(body["to_seed"]),
        method=body["method"],
        label=body["label"],
        label_name=body["label_name"],
        positions=[float(i["t"]) for i in body["images"]],
        images=[base64.b64decode(i["data"]) for i in body["images"]],
        seeds=[int(s) for s in body.get("seeds") or (body["from_seed"], body["to_seed"])],
        segments=[int(i.get("segment", 0)) for i in body["images"]],
    )


def upscale_request(
    image: bytes, media_type: str, *, deadline_ms: int | None = None, **options: Unpack[UpscaleOptions]
) -> Request:
    """The output size: the model's own factor, `scale` (1 to the largest served model's), or
    `width` and/or `height` with `fit` ("contain", "cover", "exact"); `detail` (0 to 1) blends a
    family's faithful and detail models (`detail_model`, NAME@VERSION, pins the other one);
    `strip` ("all", "gps", "none") the metadata dropped. None leaves an option out: the server's
    default. The options are /upscale's fields (contract.endpoints.UPSCALE)."""
    unknown = sorted(options.keys() - UPSCALE.by_name.keys())
    if unknown:
        raise TypeError(f"upscale() got an unexpected keyword argument {unknown[0]!r}")
    params = UPSCALE.query(options)
    headers = {"Content-Type": media_type, **_deadline(deadline_ms)}
    return Request("POST", "/upscale", content=image, params=params, headers=headers)


def parse_upscale(response: httpx.Response) -> UpscaleResult:
    return _upscale_result(response.content, response.headers.get("content-type", ""), response.headers)


def parse_upscale_line(line: dict[str, Any]) -> UpscaleResult:
    """The last line of a streamed /upscale answer: its headers as a dict, the image in base64."""
    return _upscale_result(base64.b64decode(line["data"]), line["media_type"], httpx.Headers(line["headers"]))


def upscale_progress(line: dict[str, Any], progress: Progress) -> UpscaleResult | None:
    """One line of a streamed /upscale: tile progress reported, or the answer (its last line)."""
    if "tiles" in line:
        progress(int(line["tiles_done"]), int(line["tiles"]))
        return None
    return parse_upscale_line(line) if line.get("done") else None


def _upscale_result(data: bytes, media_type: str, h: httpx.Headers) -> UpscaleResult:
    detail = h.get("x-detail")
    return UpscaleResult(
        data=data,
        media_type=media_type,
        model=h.get("x-model", ""),
        version=int(h.get("x-model-version", "0")),
        input_size=_size(h.get("x-input-size", "0x0")),
        output_size=_size(h.get("x-output-size", "0x0")),
        models=_models_run(h),
        resize=h.get("x-resize", "none"),
        crop=h.get("x-crop"),
        detail=None if detail is None else float(detail),
        bit_depth=int(h.get("x-bit-depth", "8")),
    )


def _models_run(h: httpx.Headers) -> list[str]:
    """X-Models; a server from before it ran X-Model's version alone."""
    listed = h.get("x-models")
    if listed is not None:
        return [m.strip() for m in listed.split(",") if m.strip()]
    model = h.get("x-model")
    return [f"{model}@{h.get('x-model-version', '0')}"] if model else []


def upload(image: bytes | Path, media_type: str | None) -> tuple[bytes, str]:
    """An upload's bytes and media type: a path's file read, or bytes' type told from them."""
    if isinstance(image, Path):
        return image.read_bytes(), media_type or media_type_of(image)
    if media_type is None:
        fmt = format_of_bytes(image[:16])
        if fmt is None:
            raise ValueError("not a PNG, JPEG or WebP image; give media_type to send it anyway")
        media_type = MEDIA_TYPES[fmt]
    return image, media_type


def media_type_of(path: Path) -> str:
    """The upload media type of an image file, from its first bytes (not its name)."""
    fmt = sniff_format(path)
    if fmt is None:
        raise ValueError(f"{path} is not a PNG, JPEG or WebP image")
    return MEDIA_TYPES[fmt]


def _deadline(deadline_ms: int | None) -> dict[str, str]:
    return {} if deadline_ms is None else {"X-Deadline-Ms": str(int(deadline_ms))}


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width or 0), int(height or 0)


def streamed(request: Request) -> Request:
    """The same request, asking for the streamed (NDJSON) answer."""
    return replace(request, headers={**request.headers, "Accept": NDJSON})


def unstreamed_lines(request: Request, response: httpx.Response) -> list[dict[str, Any]]:
    """A whole answer to a request that asked for a stream (a server from before streams ignores
    the Accept header), as the lines its stream would have held."""
    if request.path == "/upscale":
        data = base64.b64encode(response.content).decode("ascii")
        media = response.headers.get("content-type", "")
        return [{"done": True, "media_type": media, "headers": dict(response.headers), "data": data}]
    body = response.json()
    head = {k: v for k, v in body.items() if k != "images"}
    return [head, *({"index": i, **image} for i, image in enumerate(body["images"]))]
