"""The route's per-call context: built once from the request, the body validated once (or taken
from the door, which validated it already), and the answering model's headers made in one place."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from starlette.responses import Response

from service.api import answers
from service.api.call import Call
from service.api.route import ServiceRoute
from service.config import Settings
from service.schemas.requests import GenerateRequest
from service.transport.door import PARSED_BODY


def run(
    route: ServiceRoute, body: bytes, headers: list[tuple[bytes, bytes]], state: dict[str, Any]
) -> dict[str, Any]:
    """One request through the route's handler; the answer's status, headers and body."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/x",
        "headers": headers,
        "state": state,
        "query_string": b"",
    }
    sent: list[dict[str, Any]] = []
    received = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return received.pop(0) if received else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(route.handle(scope, receive, send))
    head = sent[0]
    return {
        "status": head["status"],
        "headers": {k.decode(): v.decode() for k, v in head["headers"]},
        "body": b"".join(m.get("body", b"") for m in sent[1:]),
    }


def test_the_call_carries_the_deadline_accept_and_model() -> None:
    seen: list[tuple[GenerateRequest, Call]] = []

    async def endpoint(body: GenerateRequest, call: Call) -> Response:
        seen.append((body, call))
        call.served_by("digits", 3)
        return answers.json_answer(call, {"ok": True})

    route = ServiceRoute.for_settings(Settings(default_deadline_ms=5000))("/x", endpoint, methods=["POST"])
    before = time.monotonic()
    state: dict[str, Any] = {}
    answer = run(route, b'{"seed": 4}', [(b"accept", b"application/json"), (b"x-deadline-ms", b"250")], state)
    body, call = seen[0]
    assert body.seed == 4 and call.accept == "application/json"
    assert before + 0.2 < call.deadline < time.monotonic() + 0.25
    assert answer["status"] == 200 and json.loads(answer["body"]) == {"ok": True}
    assert answer["headers"]["x-model"] == "digits" and answer["headers"]["x-model-version"] == "3"
    assert state["model"] == "digits" and state["version"] == 3  # for the access log and the metrics

    # without X-Deadline-Ms: the settings' default
    run(route, b"{}", [], {})
    assert seen[1][1].deadline > time.monotonic() + 4


def test_a_body_the_door_validated_is_not_validated_again() -> None:
    seen: list[GenerateRequest] = []

    async def endpoint(body: GenerateRequest, call: Call) -> Response:
        seen.append(body)
        return answers.json_answer(call, {})

    route = ServiceRoute.for_settings(Settings())("/x", endpoint, methods=["POST"])
    parsed = GenerateRequest(seed=9)
    assert run(route, b'{"seed": 9}', [], {PARSED_BODY: parsed})["status"] == 200
    assert seen[0] is parsed
    # anything else in the state is not taken for the body
    assert run(route, b'{"seed": 1}', [], {PARSED_BODY: {"seed": 9}})["status"] == 200
    assert seen[1].seed == 1
    # and an invalid body is still refused when the door did not read it
    answer = run(route, b'{"seed": -1}', [], {})
    assert answer["status"] == 422 and seen[2:] == []


def test_an_endpoint_with_a_body_and_no_call_is_refused_when_declared() -> None:
    """Mis-wired at start-up, not a 500 at the first request."""

    async def endpoint(body: GenerateRequest) -> Response:
        return Response()

    with pytest.raises(TypeError, match="takes its Call too"):
        ServiceRoute.for_settings(Settings())("/x", endpoint, methods=["POST"])


def test_the_call_parameter_may_have_any_name_and_the_body_is_not_read_twice() -> None:
    seen: list[bytes] = []

    async def endpoint(body: GenerateRequest, context: Call) -> Response:
        seen.append(await context.body())  # answered from what the route read, not the socket
        return answers.json_answer(context, {})

    route = ServiceRoute.for_settings(Settings())("/x", endpoint, methods=["POST"])
    assert run(route, b'{"seed": 2}', [], {})["status"] == 200 and seen == [b'{"seed": 2}']
