"""What the door (service.transport.door) knows of a route and of one request it looks at: the
route's Screen (which served models a request could run on, read from its query or its small JSON
body) and the Screening of a request that uvicorn has not seen past its headers."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from service.served.admission import Admission


class Admitting(Protocol):
    """What the door asks of a served model (service.served.model.ServedModel)."""

    @property
    def admission(self) -> Admission: ...


class Screened(NamedTuple):
    models: Sequence[Admitting]  # the served models the request could run on
    body: object | None  # the body as the route validates it, handed on to the route (None: not read)


Targets = Callable[[bytes, bytes], Screened]


@dataclass(frozen=True)
class Screen:
    """How the door reads one route's requests. `targets(query string, body)` gives the served
    models the request could run on and the body it validated (raising ServiceError or ValueError
    when it cannot tell: the application then answers); `needs_body`: whether it reads the body (a
    small JSON body) or the query alone (then the request is answered before its body is read)."""

    targets: Targets
    needs_body: bool


class Screening:
    """A request the door is looking at: uvicorn has not seen it past its headers."""

    __slots__ = (
        "body",
        "client",
        "close",
        "complete",
        "declared",
        "expect_100",
        "headers",
        "parsed",
        "path",
        "previous",
        "query",
        "refused",
        "refused_by",
        "retry_after",
        "screen",
        "started",
    )

    def __init__(
        self,
        screen: Screen,
        path: str,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        client: tuple[str, int] | None,
        previous: Any,
        close: bool,
        expect_100: bool,
    ) -> None:
        self.screen = screen
        self.path = path
        self.query = query
        self.headers = headers
        self.client = client
        self.previous = previous  # uvicorn's cycle of the connection's request before (None, or answered)
        self.close = close  # the answer closes the connection (Expect: 100-continue, Connection: close, 1.0)
        self.expect_100 = expect_100
        self.started = time.perf_counter()
        self.body = bytearray()
        self.parsed: object | None = None  # the body the screen validated, for the route
        self.complete = False  # the whole body is in
        self.refused = False  # answered: the rest of the body is dropped unread
        self.refused_by: Admission | None = None  # the queue whose refusal it was
        self.retry_after = 0  # the refusal's Retry-After, in seconds
        self.declared = -1  # its Content-Length (-1: none given)
        for name, value in headers:
            if name == b"content-length" and value.isdigit():
                self.declared = int(value)
