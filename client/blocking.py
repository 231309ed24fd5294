"""GanClient: the service's API as blocking calls. It runs client.plans on httpx.Client and
time.sleep, and does nothing else: what is sent, retried, held back and returned is decided there.

    with GanClient("http://127.0.0.1:8000") as gan:
        result = gan.generate(n=4, model="digits-conditional", seed=7, labels=3)
        Path("seven.png").write_bytes(result.images[0].data)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar, Unpack, overload

import httpx

from client import plans
from client.api import Progress, Request, upload, upscale_request
from client.core import NEW_THROTTLE, BaseClient, OnHold, OnRetry, _New
from client.plans import Acquire, Close, Effect, Emit, NextLine, Open, Plan, Read, Running, Send, Sleep
from client.results import (
    AnimationResult,
    GeneratedImage,
    GenerateResult,
    MixResult,
    UpscaleResult,
    WalkResult,
)
from client.retry import RetryPolicy
from client.throttle import AdaptiveConcurrency, AdaptiveThrottle
from contract.endpoints import UpscaleOptions

T = TypeVar("T")


class GanClient(BaseClient):
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

    # -- the transport: a plan's effects done with httpx.Client and time.sleep

    def _perform(self, effect: Effect) -> Any:
        match effect:
            case Sleep(seconds):
                time.sleep(seconds)
            case Acquire(limit):
                return limit.acquire_blocking()
            case Send(request):
                return self._http.request(**request.arguments())
            case Open(request):
                response = self._http.send(self._http.build_request(**request.arguments()), stream=True)
                return response, response.iter_lines()
            case Read(response):
                response.read()
            case NextLine(lines):
                return next(lines, None)
            case Close(response):
                response.close()
        return None

    def _run(self, plan: Plan[T]) -> T:
        running = Running(plan)
        while (effect := running.next()) is not None:
            try:
                running.done(self._perform(effect))
            except BaseException as e:  # the plan's to handle (a retry) or to let go on up
                running.failed(e)
        return running.result

    def _iterate(self, plan: Plan[None]) -> Iterator[Any]:
        """A streaming plan's Emit items as they come."""
        running = Running(plan)
        while (effect := running.next()) is not None:
            try:
                running.done((yield effect.item) if isinstance(effect, Emit) else self._perform(effect))
            except BaseException as e:  # GeneratorExit too: the plan closes its stream
                running.failed(e)

    # -- the API

    def send(self, request: Request) -> httpx.Response:
        """One API call, throttled and retried per the policy; raises a GanClientError."""
        return self._run(plans.exchange(self, request))

    def lines(self, request: Request) -> Iterator[dict[str, Any]]:
        """A streamed (NDJSON) answer's lines as they arrive. Retried per the policy until the
        stream begins; an error after that is raised (what was yielded stands), and an error
        line ends it as its typed error."""
        return self._iterate(plans.stream(self, request, Emit))

    def generate(self, n: int | None = None, **options: Any) -> GenerateResult:
        """POST /generate. options: model, seed, seeds, labels, truncation, format, deadline_ms;
        for style models also truncation_psi, noise_seed, noise, ws, return_latents."""
        return self._run(plans.generate(self, n, **options))

    def generate_stream(self, n: int | None = None, **options: Any) -> Iterator[tuple[int, GeneratedImage]]:
        """POST /generate, streamed: (index, image) as each batch of the request finishes, in
        order; the same images, byte for byte, as generate() returns."""
        return self._iterate(plans.generate_stream(self, n, **options))

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
        return self._run(
            plans.walk(self, from_seed, to_seed, steps, seeds=seeds, animation=animation, **options)
        )

    def mix(
        self, row_seeds: list[int] | None = None, col_seeds: list[int] | None = None, **options: Any
    ) -> MixResult:
        """POST /mix (style models): the style-mixing grid of the row and column sources.
        options: row_ws, col_ws (instead of seeds), crossover, model, label, truncation_psi,
        noise_seed, noise, grid, return_latents, format, deadline_ms."""
        return self._run(plans.mix(self, row_seeds, col_seeds, **options))

    def upscale(
        self,
        image: bytes | Path,
        media_type: str | None = None,
        *,
        deadline_ms: int | None = None,
        progress: Progress | None = None,
        **options: Unpack[UpscaleOptions],
    ) -> UpscaleResult:
        """POST /upscale with the image file's bytes (or its path). The output size: the model's
        own factor, `scale`, or `width` and/or `height` with `fit` (contain, cover, exact);
        `detail` (0 to 1) blends a family's faithful and detail models; `strip` (all, gps, none):
        the metadata dropped. None: left to the server. With `progress`, the answer is streamed
        and progress(tiles done, tiles) is called as rows of tiles finish."""
        request = upscale_request(*upload(image, media_type), deadline_ms=deadline_ms, **options)
        return self._run(plans.upscale(self, request, progress))

    def models(self) -> list[dict[str, Any]]:
        """The manifests of the loaded model versions (GET /v1/models); `default` marks the version
        that answers requests naming no version."""
        return self._run(plans.models(self))

    def versions(self) -> dict[str, dict[str, Any]]:
        """Each model's versions: policy, published, loaded, loading, failed, default, canary."""
        return self._run(plans.versions(self))

    def health(self) -> bool:
        """True when the service answers /healthz (no retries)."""
        return self._run(plans.probe("/healthz"))

    def ready(self) -> bool:
        """True when every model is loaded and warmed up (/readyz is 200; no retries)."""
        return self._run(plans.probe("/readyz"))
