"""The structured access log: one JSON line per request, written off the event loop.

Going through `logging` costs tens of microseconds per request (a LogRecord, the caller lookup,
formatting), and on a small machine that is a real share of each request. Here the event loop
only appends a tuple to a deque; a writer thread turns what has gathered into lines every
`interval` seconds and writes them with one call. The lines look like the other log lines
(`TIME LEVEL LOGGER MESSAGE`), the message being a JSON object, and the `gan.access` logger's
level still decides whether they are written (GAN_SERVE_LOG_LEVEL=warning turns them off).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from typing import TextIO

LOGGER = "gan.access"

# (request_id, method, path, status, seconds, model, client address)
Entry = tuple[str, str, str, int, float, str, str | None]


class AccessLog:
    def __init__(self, stream: TextIO, interval: float = 0.05) -> None:
        self.stream = stream
        self.interval = interval
        self._entries: deque[tuple[float, Entry]] = deque()
        self._logger = logging.getLogger(LOGGER)
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one writer at a time: the thread, or stop()

    def enabled(self) -> bool:
        return self._logger.isEnabledFor(logging.INFO)

    def record(self, entry: Entry) -> None:
        """On the event loop: cheap (a deque append is atomic)."""
        self._entries.append((time.time(), entry))

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Write out everything recorded so far; safe to call twice."""
        self._stopped = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()

    def flush(self) -> None:
        with self._lock:
            lines = []
            while self._entries:
                lines.append(format_line(*self._entries.popleft()))
            if lines:
                self.stream.write("".join(lines))
                self.stream.flush()

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(self.interval)
            try:
                self.flush()
            except (OSError, ValueError):  # stream closed or broken: drop the lines, keep serving
                self._entries.clear()


_second = (-1, "")


def _timestamp(at: float) -> str:
    """`2026-11-23 09:10:11,123`, as logging's default asctime (local time)."""
    global _second
    whole = int(at)
    if whole != _second[0]:  # strftime once per second, not once per line
        _second = (whole, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(whole)))
    return f"{_second[1]},{int((at - whole) * 1000):03d}"


def format_line(at: float, entry: Entry) -> str:
    request_id, method, path, status, seconds, model, client = entry
    message = json.dumps(
        {
            "request_id": request_id,
            "method": method,
            "path": path,
            "status": status,
            "ms": round(seconds * 1000, 2),
            "model": model or None,
            "client": client,
        }
    )
    return f"{_timestamp(at)} INFO {LOGGER} {message}\n"
