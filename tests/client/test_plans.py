"""The clients' sans-IO core on its own: GanClient's plans run by a scripted transport that
answers from a list and records every effect, with no server or socket."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from client import AdaptiveConcurrency, GanClient, Overloaded, RetryPolicy
from client.api import NDJSON
from client.plans import Acquire, Close, Effect, NextLine, Open, Send, Sleep
from client.results import GeneratedImage

FAST = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05)
IMAGE = '{"index":0,"seed":1,"label":null,"label_name":null,"data":"aGk="}'


class Scripted(GanClient):
    """A GanClient whose transport does no I/O: each Send or Open gets the next answer of
    `answers`; every effect is recorded, with the tries in flight as it was asked for."""

    def __init__(self, limit: AdaptiveConcurrency, answers: list[httpx.Response]) -> None:
        super().__init__("http://gan.test", retry=FAST, throttle=None, concurrency=limit)
        self.limit, self.answers = limit, answers
        self.done: list[tuple[Effect, int]] = []

    def _perform(self, effect: Effect) -> Any:
        self.done.append((effect, self.limit.in_flight))
        if isinstance(effect, Acquire):
            return effect.limit.acquire_blocking()
        if isinstance(effect, Send):
            return self.answers.pop(0)
        if isinstance(effect, Open):
            response = self.answers.pop(0)
            return response, iter(response.text.splitlines())
        if isinstance(effect, NextLine):
            return next(effect.lines, None)
        return None  # Sleep, Read (the body is in memory), Close

    def kinds(self) -> list[str]:
        return [type(effect).__name__ for effect, _ in self.done]


def test_a_refused_try_waits_out_retry_after_in_its_slot_then_goes_again() -> None:
    limit = AdaptiveConcurrency(maximum=4, initial=2)
    refusal = {"error": {"code": "queue_full", "message": "busy"}}
    busy = httpx.Response(429, headers={"Retry-After": "2"}, json=refusal)
    script = Scripted(limit, [busy, httpx.Response(200, json={"models": []})])
    assert script.models() == []
    assert script.kinds() == ["Acquire", "Send", "Sleep", "Acquire", "Send"]
    sleep, in_flight = script.done[2]
    assert isinstance(sleep, Sleep) and sleep.seconds >= 2  # the server's Retry-After is a floor
    assert in_flight == 1  # the refused try kept its slot while it waited
    assert limit.in_flight == 0 and limit.decreases == 1


def stream_of(*lines: str) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": NDJSON}, content="\n".join(lines).encode())


def test_an_error_line_ends_a_stream_as_its_typed_error_after_what_was_handed_on() -> None:
    limit = AdaptiveConcurrency(maximum=1)
    error = '{"error":{"code":"deadline_exceeded","message":"late"}}'
    script = Scripted(limit, [stream_of('{"model":"m"}', IMAGE, error)])
    got: list[tuple[int, GeneratedImage]] = []
    with pytest.raises(Overloaded) as late:
        for item in script.generate_stream(2):
            got.append(item)
    assert [(index, image.data) for index, image in got] == [(0, b"hi")]
    assert (late.value.status, getattr(late.value, "midstream", False)) == (504, True)  # not retried
    assert script.kinds()[-1] == "Close" and limit.in_flight == 0


def test_a_stream_its_caller_stops_reading_is_closed_and_gives_its_slot_back() -> None:
    limit = AdaptiveConcurrency(maximum=1)
    script = Scripted(limit, [stream_of('{"model":"m"}', IMAGE, IMAGE.replace('"index":0', '"index":1'))])
    items = script.generate_stream(2)
    assert next(items)[0] == 0
    assert limit.in_flight == 1  # a stream holds its slot until it ends
    items.close()
    assert isinstance(script.done[-1][0], Close) and limit.in_flight == 0
