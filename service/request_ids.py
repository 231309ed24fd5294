"""Request ids: echoed when the client sends a usable X-Request-ID, else made here."""

from __future__ import annotations

import itertools
import os
import re
from contextvars import ContextVar

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")  # what a client's own id may be to be echoed

# The id of the request being answered, set by the middleware for the code it calls (the debug log).
_current: ContextVar[str] = ContextVar("request_id", default="-")


def current_request_id() -> str:
    return _current.get()


def set_current_request_id(request_id: str) -> None:
    """For the request's own task: its contextvars end with it, so nothing needs resetting."""
    _current.set(request_id)


class RequestIds:
    """Unique ids without a system call per request: a random per-process prefix and a counter."""

    def __init__(self) -> None:
        self.prefix = os.urandom(6).hex()
        self.counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}-{next(self.counter):x}"

    def choose(self, given: bytes | None) -> str:
        """The id of a request whose first X-Request-ID header is `given` (None: it sent none): the
        client's own when usable, else a new one. The door and the middleware both use this, so a
        request gets the same id whichever of them answers it."""
        if given is not None:
            text = given.decode("latin-1")
            if REQUEST_ID.match(text):
                return text
        return self.next()
