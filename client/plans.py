"""Each API call as a plan: a generator that yields the I/O it needs (Sleep, Acquire, Send, Open,
Read, NextLine, Close), is sent back each one's outcome or has its failure thrown in, and returns
the call's result; a streaming call also yields Emit items for its caller. The plans hold every
decision (retries, throttling, the concurrency slot, error mapping, stream lines) and do no I/O:
GanClient and AsyncGanClient run the same plans, each performing the effects with its own
transport, as psycopg 3's sync and async connections run its generators.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from client.api import (
    NDJSON,
    Progress,
    Request,
    generate_request,
    image_of,
    mix_request,
    parse_generate,
    parse_mix,
    parse_upscale,
    parse_walk,
    streamed,
    unstreamed_lines,
    upscale_progress,
    walk_request,
)
from client.core import BaseClient, Slot, Tries
from client.errors import ApiError, ServerUnreachable, check, midstream, stream_error
from client.results import AnimationResult, GenerateResult, MixResult, UpscaleResult, WalkResult
from client.throttle import AdaptiveConcurrency
from contract.media import media_type as base_media_type

T = TypeVar("T")


# --- the effects: what a plan asks its transport to do, and what it is sent back ---------------


@dataclass(frozen=True)
class Sleep:
    seconds: float  # -> None


@dataclass(frozen=True)
class Acquire:
    limit: AdaptiveConcurrency  # -> a Ticket, once a slot is free


@dataclass(frozen=True)
class Send:
    request: Request  # -> the whole answer (httpx.Response, read)


@dataclass(frozen=True)
class Open:
    request: Request  # -> (the answer with its body unread, an iterator of the body's lines)


@dataclass(frozen=True)
class Read:
    response: httpx.Response  # -> None: the rest of the body read (response.content)


@dataclass(frozen=True)
class NextLine:
    lines: Any  # Open's iterator of lines (the transport's own kind) -> the next line, or None at the end


@dataclass(frozen=True)
class Close:
    response: httpx.Response  # an opened answer -> None


@dataclass(frozen=True)
class Emit:
    item: Any  # handed to the caller of a streaming call -> None


Effect = Sleep | Acquire | Send | Open | Read | NextLine | Close | Emit
Plan = Generator[Effect, Any, T]


class Abandoned(Exception):
    """Thrown into a plan in place of GeneratorExit, when its caller closes the iterator of its
    items: `yield from` would close the inner plan, which must still yield Close for its stream."""


class Running(Generic[T]):
    """A plan as its transport runs it: the next effect, given how the last one went."""

    def __init__(self, plan: Plan[T]) -> None:
        self._plan = plan
        self._reply: Any = None
        self._failure: BaseException | None = None
        self.result: T

    def next(self) -> Effect | None:
        """The next effect to perform; None once the plan has returned (its value: result). The
        last effect's failure is raised inside the plan, which handles it or lets it go on up."""
        reply, failure = self._reply, self._failure
        self._reply, self._failure = None, None
        try:
            return self._plan.send(reply) if failure is None else self._plan.throw(failure)
        except StopIteration as done:
            self.result = done.value
            return None
        except Abandoned:
            raise GeneratorExit from None  # its stream closed, its slot given back

    def done(self, reply: Any) -> None:
        self._reply = reply

    def failed(self, failure: BaseException) -> None:
        """Any failure, KeyboardInterrupt and cancellation included: the plan gives back its slot."""
        self._failure = Abandoned() if isinstance(failure, GeneratorExit) else failure


# --- sending with retries: a whole answer, or a stream's lines ------------------------------------


def _begin(tries: Tries) -> Plan[Slot]:
    """Before each try: wait while the throttle holds it back, then for a slot of the limit (no
    failure, no attempt spent)."""
    for wait in tries.holds():
        yield Sleep(wait)
    limit = tries.client.concurrency
    return tries.begin(None if limit is None else (yield Acquire(limit)))


def _retry(tries: Tries, slot: Slot, failure: httpx.TransportError | ApiError) -> Plan[None]:
    """After a failed try: wait before the next (or raise), then give its slot back (a refused
    try waited in its slot)."""
    try:
        yield Sleep(tries.failed(failure))
    finally:
        slot.give_back()


def exchange(client: BaseClient, request: Request) -> Plan[httpx.Response]:
    """One API call, throttled and retried per the client's policy; raises a GanClientError."""
    tries = Tries(client)
    while True:
        slot = yield from _begin(tries)
        try:
            with slot:
                response = check(slot.answered((yield Send(request))))
        except (httpx.TransportError, ApiError) as e:
            yield from _retry(tries, slot, e)
            continue
        tries.accepted()
        return response


LineHandler = Callable[[dict[str, Any]], Emit | T | None]


def stream(client: BaseClient, request: Request, handle: LineHandler[T]) -> Plan[T | None]:
    """A streamed (NDJSON) answer's lines as they arrive, each to `handle`: an Emit it returns is
    handed on, a result ends the call with it (None: the next line). Retried per the policy
    until the stream begins; an error after that is raised (what was handed on stands), and an
    error line ends it as its typed error. None when the stream ends."""
    tries = Tries(client)
    while True:
        slot = yield from _begin(tries)
        begun = False
        try:
            with slot:
                response, lines = yield Open(streamed(request))
                try:
                    slot.answered(response)
                    if not response.is_success:
                        yield Read(response)
                        check(response)
                    tries.accepted()  # what the stream does later is not about the server's load
                    if base_media_type(response.headers.get("content-type")) != NDJSON:
                        yield Read(response)
                        for line in unstreamed_lines(request, response):
                            if (result := (yield from _hand_on(handle(line)))) is not None:
                                return result
                        return None
                    while (text := (yield NextLine(lines))) is not None:
                        if text:
                            begun = True
                            line = json.loads(text)
                            if "error" in line:
                                break
                            if (result := (yield from _hand_on(handle(line)))) is not None:
                                return result
                    else:
                        return None
                finally:
                    yield Close(response)
        except (httpx.TransportError, ApiError) as e:
            if begun:
                slot.give_back()
                raise midstream(ServerUnreachable(f"{client.url}: the stream broke off: {e}")) from e
            yield from _retry(tries, slot, e)
            continue
        raise midstream(stream_error(line))  # the server's error, after part of the answer


def _hand_on(outcome: Emit | T | None) -> Plan[T | None]:
    """A line handler's outcome: an Emit handed on (then None), or the call's result."""
    if isinstance(outcome, Emit):
        yield outcome
        return None
    return outcome


# --- the calls ------------------------------------------------------------------------------------


def generate(client: BaseClient, n: int | None, **options: Any) -> Plan[GenerateResult]:
    return parse_generate((yield from exchange(client, generate_request(n, **options))))


def _image_line(line: dict[str, Any]) -> Emit | None:
    """A streamed /generate's image line as (index, image); its head line is passed over."""
    return Emit((int(line["index"]), image_of(line))) if "index" in line else None


def generate_stream(client: BaseClient, n: int | None, **options: Any) -> Plan[None]:
    yield from stream(client, generate_request(n, **options), _image_line)


def walk(
    client: BaseClient,
    from_seed: int | None,
    to_seed: int | None,
    steps: int,
    *,
    seeds: list[int] | None,
    animation: str | None,
    **options: Any,
) -> Plan[WalkResult | AnimationResult]:
    request = walk_request(from_seed, to_seed, steps, seeds=seeds, animation=animation, **options)
    return parse_walk((yield from exchange(client, request)))


def mix(
    client: BaseClient, row_seeds: list[int] | None, col_seeds: list[int] | None, **options: Any
) -> Plan[MixResult]:
    return parse_mix((yield from exchange(client, mix_request(row_seeds, col_seeds, **options))))


def upscale(client: BaseClient, request: Request, progress: Progress | None) -> Plan[UpscaleResult]:
    """An upscale_request's answer; with `progress`, streamed, progress(tiles done, tiles) told as
    rows of tiles finish, and asked again from the start when its stream breaks off."""
    if progress is None:
        return parse_upscale((yield from exchange(client, request)))
    restarts = Tries(client)
    while True:
        restarts.attempt += 1
        try:
            result = yield from stream(client, request, lambda line: upscale_progress(line, progress))
            if result is not None:
                return result
            raise midstream(ServerUnreachable(f"{client.url}: the stream ended before the image"))
        except (ServerUnreachable, ApiError) as e:
            if not getattr(e, "midstream", False):
                raise  # stream() has spent the retries on it already
            yield Sleep(restarts.wait_or_raise(e))


def models(client: BaseClient) -> Plan[list[dict[str, Any]]]:
    return list((yield from exchange(client, Request("GET", "/v1/models"))).json()["models"])


def versions(client: BaseClient) -> Plan[dict[str, dict[str, Any]]]:
    return dict((yield from exchange(client, Request("GET", "/v1/models"))).json().get("versions", {}))


def probe(path: str) -> Plan[bool]:
    """True when GET `path` answers with a success (no retries, no throttle): /healthz, /readyz."""
    try:
        response = yield Send(Request("GET", path))
    except httpx.TransportError:
        return False
    return bool(response.is_success)
