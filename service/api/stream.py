"""Streamed answers (Accept: application/x-ndjson): one JSON object per line, each sent as soon
as it is known.

/generate: the request is cut into parts of at most one batch of images, all queued at once; the
first line is the answer's head (model, version, format, size, n), then one line per image, in
order, as its part finishes (its entry in the JSON answer, with its index). /upscale: a line per
finished row of tiles ({"tiles_done", "tiles"}), then the answer ({"done": true, ..., "data"}).
An error found before anything is sent is answered as usual, with its status; one after the first
line is the stream's last line, {"error": {"code", "message"}}.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from contract.endpoints import GENERATE, ContractError, random_start
from contract.errors import InvalidRequest, ServiceError
from service.schemas.answers import GeneratedImage, GeneratorAnswer, StyleImage, Upscaled
from service.schemas.requests import GenerateRequest
from service.served.batcher import CancelToken

log = logging.getLogger("gan.api")
NDJSON = "application/x-ndjson"
Answer = Callable[[GenerateRequest, CancelToken], Awaitable[Any]]


def line(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode() + b"\n"


def error_line(error: ServiceError) -> bytes:
    return line({"error": {"code": error.code, "message": error.message}})


def parts(request: GenerateRequest, size: int, max_n: int) -> list[tuple[int, GenerateRequest]]:
    """(offset, the request for images offset..offset+len) for every part of at most `size`
    images, split as the contract says (contract.endpoints.GENERATE). A request without seeds gets
    its random first seed here, once for all parts."""
    if GENERATE.needs_start(request.__dict__):
        request = request.model_copy(update={"seed": random_start(max_n)})
    try:
        split = GENERATE.parts(request.__dict__, size)
    except ContractError as e:  # as the whole request would be refused
        raise InvalidRequest(str(e)) from None
    return [(start, request.model_copy(update=update)) for start, update in split]


async def start_parts(
    answer: Answer, requests: list[tuple[int, GenerateRequest]], cancel: CancelToken
) -> list[asyncio.Task[Any]]:
    """Every part queued at once. Each part checks its request and queues its rows before its
    first await, so one turn of the event loop later every part is queued or has failed: a
    failure then is the whole request's, answered with its own status before anything is sent."""
    tasks = [asyncio.ensure_future(answer(part, cancel)) for _, part in requests]
    await asyncio.sleep(0)
    failed = next((t for t in tasks if t.done() and t.exception() is not None), None)
    if failed is not None:
        await cancel_all(tasks, cancel)
        raise failed.exception()  # type: ignore[misc]
    return tasks


async def cancel_all(tasks: list[asyncio.Task[Any]], cancel: CancelToken) -> None:
    cancel.cancel()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class Stream(StreamingResponse):
    """An NDJSON answer whose work is stopped however the answer ends: sent in full, cut by an
    error, or the client gone (even before the first line, when the generator of lines never
    runs: its own cleanup could not be trusted with it)."""

    def __init__(
        self,
        lines: AsyncIterator[bytes],
        cleanup: Callable[[], Awaitable[None]],
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(lines, media_type=NDJSON, headers=headers)
        self._cleanup = cleanup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._cleanup()


def failure_line(error: BaseException) -> bytes:
    """The last line of a stream that failed after it began."""
    if isinstance(error, ServiceError):
        return error_line(error)
    log.error("a streamed answer failed: %s: %s", type(error).__name__, error)
    return error_line(ServiceError("the request failed; see the server log"))


async def generated_lines(
    head: dict[str, Any],
    requests: list[tuple[int, GenerateRequest]],
    tasks: list[asyncio.Task[Any]],
    image_json: Callable[[Any], dict[str, Any]],
) -> AsyncIterator[bytes]:
    """The head, then each part's images as the part finishes, in order (the Stream that sends
    them cancels the parts left when it ends)."""
    yield line(head)
    for (offset, _), task in zip(requests, tasks, strict=True):
        try:
            result: GeneratorAnswer = await task
        except Exception as e:
            yield failure_line(e)
            return
        for i, image in enumerate(result.images):  # type: ignore[attr-defined]
            yield line({"index": offset + i, **image_json(image)})


def image_fields(image: GeneratedImage | StyleImage) -> dict[str, Any]:
    fields: dict[str, Any] = {"seed": image.seed, "label": image.label, "label_name": image.label_name}
    if isinstance(image, StyleImage):
        fields["noise_seed"] = image.noise_seed
    fields["data"] = base64.b64encode(image.data).decode("ascii")
    if isinstance(image, StyleImage):  # as in the JSON answer: w is null unless asked for
        fields["w"] = None if image.w is None else base64.b64encode(image.w).decode("ascii")
    return fields


class UpscaleProgress:
    """One upscale's tile progress and its end, as one queue of events: (tiles done, tiles) as
    the upscale reports them, then None once its task is done."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[tuple[int, int] | None] = asyncio.Queue()

    def report(self, done: int, total: int) -> None:
        self.events.put_nowait((done, total))

    def follow(self, task: asyncio.Task[Any]) -> None:
        task.add_done_callback(lambda _: self.events.put_nowait(None))

    async def first(self, task: asyncio.Task[Any]) -> tuple[int, int]:
        """The first report (every tile is queued by then), or the request's error, raised: a
        failure before the first report is answered with its own status."""
        event = await self.events.get()
        if event is None:
            task.result()  # raises the request's error
            raise RuntimeError("the upscale ended without reporting its tiles")
        return event

    async def lines(
        self,
        first: tuple[int, int],
        task: asyncio.Task[Upscaled],
        headers: Callable[[Upscaled], dict[str, str]],
        media_types: dict[str, str],
    ) -> AsyncIterator[bytes]:
        """Tile progress as it comes, then the answer."""
        event: tuple[int, int] | None = first
        while event is not None:
            yield line({"tiles_done": event[0], "tiles": event[1]})
            event = await self.events.get()
        try:
            result = task.result()
        except Exception as e:
            yield failure_line(e)
            return
        yield line(
            {
                "done": True,
                "media_type": media_types[result.format],
                "headers": headers(result),
                "data": base64.b64encode(result.data).decode("ascii"),
            }
        )
