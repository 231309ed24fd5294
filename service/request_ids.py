"""Request ids: echoed when the client sends a usable X-Request-ID, else made here."""

from __future__ import annotations

import itertools
import os
import re

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")  # what a client's own id may be to be echoed


class RequestIds:
    """Unique ids without a system call per request: a random per-process prefix and a counter."""

    def __init__(self) -> None:
        self.prefix = os.urandom(6).hex()
        self.counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}-{next(self.counter):x}"
