"""AsyncGanClient: GanClient's API for asyncio. It runs the same client.plans on httpx.AsyncClient
and asyncio.sleep, and does nothing else: what is sent, retried, held back and returned is decided
there."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
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


class AsyncGanClient(BaseClient):
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

    # -- the transport: a plan's effects done with httpx.AsyncClient and asyncio.sleep

    async def _perform(self, effect: Effect) -> Any:
        match effect:
            case Sleep(seconds):
                await asyncio.sleep(seconds)
            case Acquire(limit):
                return await limit.acquire()
            case Send(request):
                return await self._http.request(**request.arguments())
            case Open(request):
                response = await self._http.send(self._http.build_request(**request.arguments()), stream=True)
                return response, response.aiter_lines()
            case Read(response):
                await response.aread()
            case NextLine(lines):
                return await anext(lines, None)
            case Close(response):
                await response.aclose()
        return None

    async def _run(self, plan: Plan[T]) -> T:
        running = Running(plan)
        while (effect := running.next()) is not None:
            try:
                running.done(await self._perform(effect))
            except BaseException as e:  # the plan's to handle (a retry) or to let go on up
                running.failed(e)
        return running.result

    async def _iterate(self, plan: Plan[None]) -> AsyncIterator[Any]:
        """A streaming plan's Emit items as they come."""
        running = Running(plan)
        while (effect := running.next()) is not None:
            try:
                running.done((yield effect.item) if isinstance(effect, Emit) else await self._perform(effect))
            except BaseException as e:  # GeneratorExit too: the plan closes its stream
                running.failed(e)

    # -- the API: as GanClient's

    async def send(self, request: Request) -> httpx.Response:
        """As GanClient.send."""
        return await self._run(plans.exchange(self, request))

    def lines(self, request: Request) -> AsyncIterator[dict[str, Any]]:
        """As GanClient.lines."""
        return self._iterate(plans.stream(self, request, Emit))

    async def generate(self, n: int | None = None, **options: Any) -> GenerateResult:
        return await self._run(plans.generate(self, n, **options))

    def generate_stream(
        self, n: int | None = None, **options: Any
    ) -> AsyncIterator[tuple[int, GeneratedImage]]:
        """As GanClient.generate_stream."""
        return self._iterate(plans.generate_stream(self, n, **options))

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
        return await self._run(
            plans.walk(self, from_seed, to_seed, steps, seeds=seeds, animation=animation, **options)
        )

    async def mix(
        self, row_seeds: list[int] | None = None, col_seeds: list[int] | None = None, **options: Any
    ) -> MixResult:
        return await self._run(plans.mix(self, row_seeds, col_seeds, **options))

    async def upscale(
        self,
        image: bytes | Path,
        media_type: str | None = None,
        *,
        deadline_ms: int | None = None,
        progress: Progress | None = None,
        **options: Unpack[UpscaleOptions],
    ) -> UpscaleResult:
        request = upscale_request(*upload(image, media_type), deadline_ms=deadline_ms, **options)
        return await self._run(plans.upscale(self, request, progress))

    async def models(self) -> list[dict[str, Any]]:
        return await self._run(plans.models(self))

    async def versions(self) -> dict[str, dict[str, Any]]:
        return await self._run(plans.versions(self))

    async def health(self) -> bool:
        return await self._run(plans.probe("/healthz"))

    async def ready(self) -> bool:
        return await self._run(plans.probe("/readyz"))
