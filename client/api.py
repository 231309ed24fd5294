"""The service's API as Python calls, sync (GanClient) and async (AsyncGanClient), on httpx.

    with GanClient("http://127.0.0.1:8000") as gan:
        result = gan.generate(n=4, model="digits-conditional", seed=7, labels=3)
        Path("seven.png").write_bytes(result.images[0].data)

Both retry what may succeed later (429/502/503/504 and connection errors) per their RetryPolicy,
waiting at least the server's Retry-After; errors about the request itself are raised at once as
RequestRejected. Both throttle themselves (client.throttle): while the server refuses much of what
a client sends, the client holds some of its tries back; given an AdaptiveConcurrency, a client
also limits how many of its tries are in flight at once. Requests are built and answers parsed by
the same functions for both.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

import httpx

from client.errors import ApiError, GanClientError, ServerUnreachable, error_from_response
from client.files import format_of_bytes, sniff_format
from client.retry import RetryPolicy
from client.throttle import AdaptiveConcurrency, AdaptiveThrottle, Outcome, Ticket
from contract.errors import ServiceError  # the server's table of error codes (no dependencies)
from contract.media import ANIMATION_MEDIA_TYPES, JSON, MEDIA_TYPES  # the server's own tables (stdlib only)
from contract.media import media_type as base_media_type

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "GAN_CLIENT_URL"
API_KEY_ENV = "GAN_API_KEY"
API_KEY_HEADER = "X-API-Key"


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


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    json: dict[str, Any] | None = None
    content: bytes | None = None
    params: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)


# --- requests and answers, shared by both clients ----------------------------------------------


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
        images=[_image_of(i) for i in body["images"]],
    )


def _image_of(item: dict[str, Any]) -> GeneratedImage:
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
        rows=[_image_of(i) for i in body["rows"]],
        columns=[_image_of(i) for i in body["columns"]],
        cells=[[_image_of(i) for i in row] for row in body["cells"]],
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
    image: bytes,
    media_type: str,
    *,
    model: str | None = None,
    format: str | None = None,
    scale: float | None = None,
    width: int | None = None,
    height: int | None = None,
    fit: str | None = None,
    detail: float | None = None,
    detail_model: str | None = None,
    strip: str | None = None,
    deadline_ms: int | None = None,
) -> Request:
    """The output size: the model's own factor, `scale` (1 to the largest served model's), or
    `width` and/or `height` with `fit` ("contain", "cover", "exact"); `detail` (0 to 1) blends a
    family's faithful and detail models (`detail_model`, NAME@VERSION, pins the other one);
    `strip` ("all", "gps", "none") the metadata dropped. None leaves an option out: the server's
    default."""
    params = {
        key: str(value)
        for key, value in (
            ("model", model),
            ("format", format),
            ("scale", scale),
            ("width", width),
            ("height", height),
            ("fit", fit),
            ("detail", detail),
            ("detail_model", detail_model),
            ("strip", strip),
        )
        if value is not None
    }
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


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": "gan-client/0.1"}
    if api_key:
        headers[API_KEY_HEADER] = api_key
    return headers


def _check(response: httpx.Response) -> httpx.Response:
    if response.is_success:
        return response
    raise error_from_response(response.status_code, response.content, dict(response.headers))


def _settings(url: str | None, api_key: str | None) -> tuple[str, str | None]:
    url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"the service URL must start with http:// or https://, got {url!r}")
    return url, api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None


# --- the clients --------------------------------------------------------------------------------

OnRetry = Callable[[Exception, float], None]  # (the error, seconds until the next try)
OnHold = Callable[[float], None]  # seconds a try is held back by the client's own throttle
Progress = Callable[[int, int], None]  # a streamed upscale's (tiles done, tiles)
NDJSON = "application/x-ndjson"


def streamed(request: Request) -> Request:
    """The same request, asking for the streamed (NDJSON) answer."""
    return Request(
        request.method,
        request.path,
        request.json,
        request.content,
        request.params,
        {**request.headers, "Accept": NDJSON},
    )


def _statuses(kind: type[ServiceError] = ServiceError) -> dict[str, int]:
    """Every service error code -> its HTTP status (the server's own table, contract.errors)."""
    table = {kind.code: kind.status}
    for sub in kind.__subclasses__():
        table |= _statuses(sub)
    return table


STATUS_OF_CODE = _statuses()


def stream_error(line: dict[str, Any]) -> ApiError:
    """The error a stream ended with, after some of it was sent: typed as its status would be."""
    error = line["error"]
    status = STATUS_OF_CODE.get(str(error.get("code")), 500)
    return error_from_response(status, json.dumps({"error": error}).encode(), {})


def midstream(error: GanClientError) -> GanClientError:
    """Marks an error that ended a stream after it began (lines() does not retry those: what was
    yielded stands; a caller that can ask again from the start may, see upscale)."""
    error.midstream = True  # type: ignore[attr-defined]
    return error


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


def _call(request: Request) -> dict[str, Any]:
    """httpx request arguments."""
    return {
        "method": request.method,
        "url": request.path,
        "json": request.json,
        "content": request.content,
        "params": request.params,
        "headers": request.headers,
    }


# Answers that refuse a try for want of capacity (the throttle's refusals): 429 (queue full,
# shedding) and 503 (starting, draining, out of service). Any other answer is an accept: even a
# 502 or 504 (a proxy's trouble, a deadline) or an error about the request means the server (or
# the proxy) took the try on.
REFUSALS = frozenset({429, 503})


class _New(enum.Enum):
    THROTTLE = "a new AdaptiveThrottle() for each client"


NEW_THROTTLE = _New.THROTTLE  # the default of a client's `throttle`: one of its own


class _Slot:
    """One try's place under the client's concurrency limit (with no limit: a stand-in), as a
    context manager around the try. Its outcome comes from the answer's status (none: no
    answer); leaving the block gives the slot back with it, except that a try refused (429,
    503) keeps its slot, its refusal recorded at once, while it waits out the server's
    Retry-After: the caller gives it back after that wait (give_back). Were it free, another
    try would go at once to a server that has just said it takes no more for a while."""

    __slots__ = ("limit", "status", "ticket")

    def __init__(self, limit: AdaptiveConcurrency | None, ticket: Ticket | None) -> None:
        self.limit, self.ticket = limit, ticket
        self.status: int | None = None

    def answered(self, response: httpx.Response) -> httpx.Response:
        self.status = response.status_code
        return response

    def outcome(self) -> Outcome:
        if self.status is None:
            return Outcome.NO_ANSWER
        return Outcome.REFUSED if self.status in REFUSALS else Outcome.ACCEPTED

    def __enter__(self) -> _Slot:
        return self

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        refused = isinstance(error, ApiError) and self.outcome() is Outcome.REFUSED
        if refused and self.limit is not None and self.ticket is not None:
            self.limit.record(self.ticket, Outcome.REFUSED)  # the slot stays taken: give_back()
        else:
            self.give_back()

    def give_back(self) -> None:
        if self.limit is not None and self.ticket is not None and not self.ticket.released:
            self.limit.release(self.ticket, self.outcome())


class _Retrying:
    """What both clients share: their settings, whether to hold a try back (the throttle), and
    what to do when a try fails (raise, or say how long to wait before the next)."""

    def __init__(
        self,
        url: str | None,
        api_key: str | None,
        retry: RetryPolicy | None,
        on_retry: OnRetry | None,
        throttle: AdaptiveThrottle | _New | None,
        on_hold: OnHold | None,
        concurrency: AdaptiveConcurrency | None,
    ) -> None:
        self.url, key = _settings(url, api_key)
        self.headers = _headers(key)  # sent with every request
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        self.throttle = AdaptiveThrottle() if throttle is NEW_THROTTLE else throttle
        self.on_hold = on_hold
        self.concurrency = concurrency

    def _slot(self) -> _Slot:
        """Before each try (GanClient): a slot of the concurrency limit, waited for (no failure,
        no attempt spent). A stream's try lasts until the stream ends."""
        limit = self.concurrency
        return _Slot(limit, None if limit is None else limit.acquire_blocking())

    async def _async_slot(self) -> _Slot:
        """As _slot, for AsyncGanClient."""
        limit = self.concurrency
        return _Slot(limit, None if limit is None else await limit.acquire())

    def _hold(self, held_s: float, again: bool) -> float | None:
        """Before each try of a call that has been held back held_s seconds so far (again: this
        try already was): seconds to wait before asking again, or None to send it now. A
        held-back try is no failure and spends no attempt; a call is held back at most the retry
        policy's patience in all (then it is sent regardless), so that a server refusing
        everything cannot stall it for long."""
        patience_left = self.retry.patience() - held_s
        if self.throttle is None or patience_left < 1e-6:  # (not 0: sums of floats)
            return None
        wait = self.throttle.hold_back(again=again)
        if wait is None:
            return None
        wait = min(wait, patience_left)
        if self.on_hold:
            self.on_hold(wait)
        return wait

    def _accepted(self) -> None:
        """A try got a success answer: the throttle counts an accept."""
        if self.throttle is not None:
            self.throttle.record(True)

    def _failed(self, failure: httpx.TransportError | ApiError, attempt: int) -> float:
        """A try got an error answer or none: the throttle counts a refusal (429, 503) or an
        accept (any other answer; no answer counts as neither), then _wait_or_raise."""
        if self.throttle is not None and isinstance(failure, ApiError):
            self.throttle.record(failure.status not in REFUSALS)
        return self._wait_or_raise(failure, attempt)

    def _wait_or_raise(self, failure: httpx.TransportError | GanClientError, attempt: int) -> float:
        error = (
            ServerUnreachable(f"{self.url}: {failure}")
            if isinstance(failure, httpx.TransportError)
            else failure
        )
        if not self.retry.should_retry(error, attempt):
            raise error from failure
        wait = self.retry.delay(error, attempt)
        if self.on_retry:
            self.on_retry(error, wait)
        return wait


class GanClient(_Retrying):
    """Blocking client. url: the service (default $GAN_CLIENT_URL, else http://127.0.0.1:8000);
    api_key: sent as X-API-Key (default $GAN_API_KEY); timeout: seconds per try; retry: when to
    try again (default RetryPolicy()), on_retry(error, wait) told before each retry; throttle:
    the client's own (default: a new AdaptiveThrottle(); None: never hold a try back; share one
    between clients to throttle them together), on_hold(wait) told before each held-back wait;
    concurrency: an AdaptiveConcurrency to limit the tries in flight at once (default None: no
    limit). A client may be used from several threads at once."""

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        on_retry: OnRetry | None = None,
        throttle: AdaptiveThrottle | _New | None = NEW_THROTTLE,
        on_hold: OnHold | None = None,
        concurrency: AdaptiveConcurrency | None = None,
    ) -> None:
        super().__init__(url, api_key, retry, on_retry, throttle, on_hold, concurrency)
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=self.headers)

    def __enter__(self) -> GanClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _wait_while_held(self, held: float) -> float:
        """Before a try: sleep while the throttle holds it back (see _hold); the seconds the
        call has been held back in all."""
        again = False
        while (wait := self._hold(held, again)) is not None:
            held, again = held + wait, True
            time.sleep(wait)
        return held

    def send(self, request: Request) -> httpx.Response:
        """One API call, throttled and retried per the policy; raises a GanClientError."""
        attempt, held = 0, 0.0
        while True:
            held = self._wait_while_held(held)
            attempt += 1
            slot = self._slot()
            try:
                with slot:
                    response = _check(slot.answered(self._http.request(**_call(request))))
            except (httpx.TransportError, ApiError) as e:
                try:
                    time.sleep(self._failed(e, attempt))
                finally:
                    slot.give_back()  # a refused try waited in its slot
                continue
            self._accepted()
            return response

    def lines(self, request: Request) -> Iterator[dict[str, Any]]:
        """A streamed (NDJSON) answer's lines as they arrive. Retried per the policy until the
        stream begins; an error after that is raised (what was yielded stands), and an error
        line ends it as its typed error."""
        attempt, held = 0, 0.0
        while True:
            held = self._wait_while_held(held)
            attempt += 1
            begun = False
            slot = self._slot()
            try:
                with slot, self._http.stream(**_call(streamed(request))) as response:
                    slot.answered(response)
                    if not response.is_success:
                        response.read()
                        _check(response)
                    self._accepted()  # what the stream does later is not about the server's load
                    if base_media_type(response.headers.get("content-type")) != NDJSON:
                        response.read()
                        yield from unstreamed_lines(request, response)
                        return
                    for text in response.iter_lines():
                        if text:
                            begun = True
                            line = json.loads(text)
                            if "error" in line:
                                break
                            yield line
                    else:
                        return
            except (httpx.TransportError, ApiError) as e:
                try:
                    if begun:
                        raise midstream(ServerUnreachable(f"{self.url}: the stream broke off: {e}")) from e
                    time.sleep(self._failed(e, attempt))
                finally:
                    slot.give_back()
                continue
            raise midstream(stream_error(line))  # the server's error, after part of the answer

    def generate(self, n: int | None = None, **options: Any) -> GenerateResult:
        """POST /generate. options: model, seed, seeds, labels, truncation, format, deadline_ms;
        for style models also truncation_psi, noise_seed, noise, ws, return_latents."""
        return parse_generate(self.send(generate_request(n, **options)))

    def generate_stream(self, n: int | None = None, **options: Any) -> Iterator[tuple[int, GeneratedImage]]:
        """POST /generate, streamed: (index, image) as each batch of the request finishes, in
        order; the same images, byte for byte, as generate() returns."""
        for line in self.lines(generate_request(n, **options)):
            if "index" in line:
                yield int(line["index"]), _image_of(line)

    @overload
    def walk(
        self,
        from_seed: int | None = None,
        to_seed: int | None = None,
        steps: int = 8,
        *,
        seeds: list[int] | None = None,
        animation: None = None,
        **options: Any,
    ) -> WalkResult: ...

    @overload
    def walk(
        self,
        from_seed: int | None = None,
        to_seed: int | None = None,
        steps: int = 8,
        *,
        seeds: list[int] | None = None,
        animation: Literal["webp", "gif", "apng"],
        **options: Any,
    ) -> AnimationResult: ...

    @overload
    def walk(
        self,
        from_seed: int | None = None,
        to_seed: int | None = None,
        steps: int = 8,
        *,
        seeds: list[int] | None = None,
        animation: str | None = None,
        **options: Any,
    ) -> WalkResult | AnimationResult: ...

    def walk(
        self,
        from_seed: int | None = None,
        to_seed: int | None = None,
        steps: int = 8,
        *,
        seeds: list[int] | None = None,
        animation: str | None = None,
        **options: Any,
    ) -> WalkResult | AnimationResult:
        """POST /walk: `steps` images from from_seed's to to_seed's, or with seeds a loop through
        them back to the first (`steps` per seed). With animation ("webp", "gif", "apng") one
        animated file (AnimationResult) instead of the images. options: model, label, truncation
        (or truncation_psi, noise_seed, noise for style models), method ("slerp" or "lerp"),
        format, frame_ms (with animation), deadline_ms."""
        request = walk_request(from_seed, to_seed, steps, seeds=seeds, animation=animation, **options)
        return parse_walk(self.send(request))

    def mix(
        self, row_seeds: list[int] | None = None, col_seeds: list[int] | None = None, **options: Any
    ) -> MixResult:
        """POST /mix (style models): the style-mixing grid of the row and column sources.
        options: row_ws, col_ws (instead of seeds), crossover, model, label, truncation_psi,
        noise_seed, noise, grid, return_latents, format, deadline_ms."""
        return parse_mix(self.send(mix_request(row_seeds, col_seeds, **options)))

    def upscale(
        self,
        image: bytes | Path,
        media_type: str | None = None,
        *,
        model: str | None = None,
        format: str | None = None,
        scale: float | None = None,
        width: int | None = None,
        height: int | None = None,
        fit: str | None = None,
        detail: float | None = None,
        detail_model: str | None = None,
        strip: str | None = None,
        deadline_ms: int | None = None,
        progress: Progress | None = None,
    ) -> UpscaleResult:
        """POST /upscale with the image file's bytes (or its path). The output size: the model's
        own factor, `scale`, or `width` and/or `height` with `fit` (contain, cover, exact);
        `detail` (0 to 1) blends a family's faithful and detail models; `strip` (all, gps, none):
        the metadata dropped. None: left to the server. With `progress`, the answer is streamed
        and progress(tiles done, tiles) is called as rows of tiles finish."""
        data, media_type = _image(image, media_type)
        request = upscale_request(
            data,
            media_type,
            model=model,
            format=format,
            scale=scale,
            width=width,
            height=height,
            fit=fit,
            detail=detail,
            detail_model=detail_model,
            strip=strip,
            deadline_ms=deadline_ms,
        )
        if progress is None:
            return parse_upscale(self.send(request))
        attempt = 0
        while True:  # an upscale is asked again from the start when its stream breaks off
            attempt += 1
            try:
                for line in self.lines(request):
                    result = upscale_progress(line, progress)
                    if result is not None:
                        return result
                raise midstream(ServerUnreachable(f"{self.url}: the stream ended before the image"))
            except (ServerUnreachable, ApiError) as e:
                if not getattr(e, "midstream", False):
                    raise  # lines() has spent the retries on it already
                time.sleep(self._wait_or_raise(e, attempt))

    def models(self) -> list[dict[str, Any]]:
        """The manifests of the loaded model versions (GET /v1/models); `default` marks the version
        that answers requests naming no version."""
        return list(self.send(Request("GET", "/v1/models")).json()["models"])

    def versions(self) -> dict[str, dict[str, Any]]:
        """Each model's versions: policy, published, loaded, loading, failed, default, canary."""
        return dict(self.send(Request("GET", "/v1/models")).json().get("versions", {}))

    def health(self) -> bool:
        """True when the service answers /healthz (no retries)."""
        try:
            return self._http.get("/healthz").is_success
        except httpx.TransportError:
            return False

    def ready(self) -> bool:
        """True when every model is loaded and warmed up (/readyz is 200; no retries)."""
        try:
            return self._http.get("/readyz").is_success
        except httpx.TransportError:
            return False


class AsyncGanClient(_Retrying):
    """The same API for asyncio; share one client between many concurrent calls (they share its
    throttle and its concurrency limit too)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        on_retry: OnRetry | None = None,
        max_connections: int = 100,
        throttle: AdaptiveThrottle | _New | None = NEW_THROTTLE,
        on_hold: OnHold | None = None,
        concurrency: AdaptiveConcurrency | None = None,
    ) -> None:
        super().__init__(url, api_key, retry, on_retry, throttle, on_hold, concurrency)
        self._http = httpx.AsyncClient(
            base_url=self.url,
            timeout=timeout,
            headers=self.headers,
            limits=httpx.Limits(max_connections=max_connections),
        )

    async def __aenter__(self) -> AsyncGanClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _wait_while_held(self, held: float) -> float:
        """As GanClient._wait_while_held."""
        again = False
        while (wait := self._hold(held, again)) is not None:
            held, again = held + wait, True
            await asyncio.sleep(wait)
        return held

    async def send(self, request: Request) -> httpx.Response:
        """As GanClient.send."""
        attempt, held = 0, 0.0
        while True:
            held = await self._wait_while_held(held)
            attempt += 1
            slot = await self._async_slot()
            try:
                with slot:
                    response = _check(slot.answered(await self._http.request(**_call(request))))
            except (httpx.TransportError, ApiError) as e:
                try:
                    await asyncio.sleep(self._failed(e, attempt))
                finally:
                    slot.give_back()  # a refused try waited in its slot
                continue
            self._accepted()
            return response

    async def lines(self, request: Request) -> AsyncIterator[dict[str, Any]]:
        """As GanClient.lines."""
        attempt, held = 0, 0.0
        while True:
            held = await self._wait_while_held(held)
            attempt += 1
            begun = False
            slot = await self._async_slot()
            try:
                with slot:
                    async with self._http.stream(**_call(streamed(request))) as response:
                        slot.answered(response)
                        if not response.is_success:
                            await response.aread()
                            _check(response)
                        self._accepted()
                        if base_media_type(response.headers.get("content-type")) != NDJSON:
                            await response.aread()
                            for line in unstreamed_lines(request, response):
                                yield line
                            return
                        async for text in response.aiter_lines():
                            if text:
                                begun = True
                                line = json.loads(text)
                                if "error" in line:
                                    break
                                yield line
                        else:
                            return
            except (httpx.TransportError, ApiError) as e:
                try:
                    if begun:
                        raise midstream(ServerUnreachable(f"{self.url}: the stream broke off: {e}")) from e
                    await asyncio.sleep(self._failed(e, attempt))
                finally:
                    slot.give_back()
                continue
            raise midstream(stream_error(line))  # the server's error, after part of the answer

    async def generate(self, n: int | None = None, **options: Any) -> GenerateResult:
        return parse_generate(await self.send(generate_request(n, **options)))

    async def generate_stream(
        self, n: int | None = None, **options: Any
    ) -> AsyncIterator[tuple[int, GeneratedImage]]:
        """As GanClient.generate_stream."""
        async for line in self.lines(generate_request(n, **options)):
            if "index" in line:
                yield int(line["index"]), _image_of(line)

    @overload
    async def walk(
        self,
        from_seed: int | None = None,
        to_seed: int | None = None,
        steps: int = 8,
        *,
        seeds: list[int] | None = None,
        animation: None = None,
        **options: Any,
    ) -> WalkResult: ...

    @overload
    async def walk(
        self,
        from_seed: int | None = None,
        to_seed: int | None = None,
        steps: int = 8,
        *,
        seeds: list[int] | None = None,
        animation: Literal["webp", "gif", "apng"],
        **options: Any,
    ) -> AnimationResult: ...

    @overload
    async def walk(
        self,
        from_seed: int | None = None,
        to_seed: int | None = None,
        steps: int = 8,
        *,
        seeds: list[int] | None = None,
        animation: str | None = None,
        **options: Any,
    ) -> WalkResult | AnimationResult: ...

    async def walk(
        self,
        from_seed: int | None = None,
        to_seed: int | None = None,
        steps: int = 8,
        *,
        seeds: list[int] | None = None,
        animation: str | None = None,
        **options: Any,
    ) -> WalkResult | AnimationResult:
        request = walk_request(from_seed, to_seed, steps, seeds=seeds, animation=animation, **options)
        return parse_walk(await self.send(request))

    async def mix(
        self, row_seeds: list[int] | None = None, col_seeds: list[int] | None = None, **options: Any
    ) -> MixResult:
        return parse_mix(await self.send(mix_request(row_seeds, col_seeds, **options)))

    async def upscale(
        self,
        image: bytes | Path,
        media_type: str | None = None,
        *,
        model: str | None = None,
        format: str | None = None,
        scale: float | None = None,
        width: int | None = None,
        height: int | None = None,
        fit: str | None = None,
        detail: float | None = None,
        detail_model: str | None = None,
        strip: str | None = None,
        deadline_ms: int | None = None,
        progress: Progress | None = None,
    ) -> UpscaleResult:
        data, media_type = _image(image, media_type)
        request = upscale_request(
            data,
            media_type,
            model=model,
            format=format,
            scale=scale,
            width=width,
            height=height,
            fit=fit,
            detail=detail,
            detail_model=detail_model,
            strip=strip,
            deadline_ms=deadline_ms,
        )
        if progress is None:
            return parse_upscale(await self.send(request))
        attempt = 0
        while True:  # as GanClient.upscale
            attempt += 1
            try:
                async for line in self.lines(request):
                    result = upscale_progress(line, progress)
                    if result is not None:
                        return result
                raise midstream(ServerUnreachable(f"{self.url}: the stream ended before the image"))
            except (ServerUnreachable, ApiError) as e:
                if not getattr(e, "midstream", False):
                    raise
                await asyncio.sleep(self._wait_or_raise(e, attempt))

    async def models(self) -> list[dict[str, Any]]:
        return list((await self.send(Request("GET", "/v1/models"))).json()["models"])

    async def versions(self) -> dict[str, dict[str, Any]]:
        return dict((await self.send(Request("GET", "/v1/models"))).json().get("versions", {}))

    async def health(self) -> bool:
        try:
            return (await self._http.get("/healthz")).is_success
        except httpx.TransportError:
            return False

    async def ready(self) -> bool:
        try:
            return (await self._http.get("/readyz")).is_success
        except httpx.TransportError:
            return False


def _image(image: bytes | Path, media_type: str | None) -> tuple[bytes, str]:
    if isinstance(image, Path):
        return image.read_bytes(), media_type or media_type_of(image)
    if media_type is None:
        fmt = format_of_bytes(image[:16])
        if fmt is None:
            raise ValueError("not a PNG, JPEG or WebP image; give media_type to send it anyway")
        media_type = MEDIA_TYPES[fmt]
    return image, media_type


__all__ = [
    "AdaptiveConcurrency",
    "AdaptiveThrottle",
    "AnimationResult",
    "AsyncGanClient",
    "GanClient",
    "GanClientError",
    "GenerateResult",
    "GeneratedImage",
    "MixResult",
    "UpscaleResult",
    "WalkResult",
]
