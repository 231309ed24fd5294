"""What both clients decide the same way, with no I/O: their settings (BaseClient), and between
one call's tries (Tries) whether the client's own throttle holds the next one back, which slot of
the concurrency limit it takes and with what outcome it gives it back, and after a failure whether
to wait and try again or raise. client.plans asks these; the clients only sleep, wait for slots
and send.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Iterator

import httpx

from client.errors import ApiError, GanClientError, unreachable
from client.retry import RetryPolicy
from client.throttle import AdaptiveConcurrency, AdaptiveThrottle, Outcome, Ticket

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "GAN_CLIENT_URL"
API_KEY_ENV = "GAN_API_KEY"
API_KEY_HEADER = "X-API-Key"

OnRetry = Callable[[Exception, float], None]  # (the error, seconds until the next try)
OnHold = Callable[[float], None]  # seconds a try is held back by the client's own throttle

# Answers that refuse a try for want of capacity (the throttle's refusals): 429 (queue full,
# shedding) and 503 (starting, draining, out of service). Any other answer is an accept: even a
# 502 or 504 (a proxy's trouble, a deadline) or an error about the request means the server (or
# the proxy) took the try on.
REFUSALS = frozenset({429, 503})


class _New(enum.Enum):
    THROTTLE = "a new AdaptiveThrottle() for each client"


NEW_THROTTLE = _New.THROTTLE  # the default of a client's `throttle`: one of its own


class BaseClient:
    """What both clients are set with: the service's URL, the headers sent with every request,
    when to retry (and whom to tell), the throttle (and whom to tell of a hold), the limit on
    tries in flight."""

    def __init__(
        self,
        url: str | None,
        api_key: str | None,
        retry: RetryPolicy | None,
        on_retry: OnRetry | None,
        throttle: AdaptiveThrottle | _New | None,
        on_hold: OnHold | None,
        concurrency: AdaptiveConcurrency | None,
    ) -> None:
        self.url, key = _settings(url, api_key)
        self.headers = _headers(key)  # sent with every request
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        self.throttle = AdaptiveThrottle() if throttle is NEW_THROTTLE else throttle
        self.on_hold = on_hold
        self.concurrency = concurrency


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": "gan-client/0.1"}
    if api_key:
        headers[API_KEY_HEADER] = api_key
    return headers


def _settings(url: str | None, api_key: str | None) -> tuple[str, str | None]:
    url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"the service URL must start with http:// or https://, got {url!r}")
    return url, api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None


class Slot:
    """One try's place under the client's concurrency limit (with no limit: a stand-in), as a
    context manager around the try. Its outcome comes from the answer's status (none: no
    answer); leaving the block gives the slot back with it, except that a try refused (429,
    503) keeps its slot, its refusal recorded at once, while it waits out the server's
    Retry-After: the caller gives it back after that wait (give_back). Were it free, another
    try would go at once to a server that has just said it takes no more for a while."""

    __slots__ = ("limit", "status", "ticket")

    def __init__(self, limit: AdaptiveConcurrency | None, ticket: Ticket | None) -> None:
        self.limit, self.ticket = limit, ticket
        self.status: int | None = None

    def answered(self, response: httpx.Response) -> httpx.Response:
        self.status = response.status_code
        return response

    def outcome(self) -> Outcome:
        if self.status is None:
            return Outcome.NO_ANSWER
        return Outcome.REFUSED if self.status in REFUSALS else Outcome.ACCEPTED

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        refused = isinstance(error, ApiError) and self.outcome() is Outcome.REFUSED
        if refused and self.limit is not None and self.ticket is not None:
            self.limit.record(self.ticket, Outcome.REFUSED)  # the slot stays taken: give_back()
        else:
            self.give_back()

    def give_back(self) -> None:
        if self.limit is not None and self.ticket is not None and not self.ticket.released:
            self.limit.release(self.ticket, self.outcome())


class Tries:
    """One call's tries: how long the throttle holds each back, its slot, what its answer counts
    for, and after a failure the wait before the next try (or the error, raised)."""

    def __init__(self, client: BaseClient) -> None:
        self.client = client
        self.attempt = 0  # tries made (begun) so far
        self.held = 0.0  # seconds the call has been held back in all

    def holds(self) -> Iterator[float]:
        """Before a try: each wait while the throttle holds it back. A held-back try is no
        failure and spends no attempt; a call is held back at most the retry policy's patience
        in all (then it is sent regardless), so that a server refusing everything cannot stall
        it for long."""
        again = False
        while (wait := self._hold(again)) is not None:
            self.held, again = self.held + wait, True
            yield wait

    def _hold(self, again: bool) -> float | None:
        patience_left = self.client.retry.patience() - self.held
        throttle = self.client.throttle
        if throttle is None or patience_left < 1e-6:  # (not 0: sums of floats)
            return None
        wait = throttle.hold_back(again=again)
        if wait is None:
            return None
        wait = min(wait, patience_left)
        if self.client.on_hold:
            self.client.on_hold(wait)
        return wait

    def begin(self, ticket: Ticket | None) -> Slot:
        """A try begins in its slot of the limit (`ticket`, waited for; None with no limit). A
        stream's try lasts until the stream ends."""
        self.attempt += 1
        return Slot(self.client.concurrency, ticket)

    def accepted(self) -> None:
        """The try got a success answer: the throttle counts an accept."""
        if self.client.throttle is not None:
            self.client.throttle.record(True)

    def failed(self, failure: httpx.TransportError | ApiError) -> float:
        """The try got an error answer or none: the throttle counts a refusal (429, 503) or an
        accept (any other answer; no answer counts as neither), then wait_or_raise."""
        if self.client.throttle is not None and isinstance(failure, ApiError):
            self.client.throttle.record(failure.status not in REFUSALS)
        return self.wait_or_raise(failure)

    def wait_or_raise(self, failure: httpx.TransportError | GanClientError) -> float:
        """The seconds to wait before the next try, when the policy retries this failure after
        `attempt` tries (on_retry is told); else the failure as a GanClientError, raised."""
        error = unreachable(self.client.url, failure)
        if not self.client.retry.should_retry(error, self.attempt):
            raise error from failure
        wait = self.client.retry.delay(error, self.attempt)
        if self.client.on_retry:
            self.client.on_retry(error, wait)
        return wait
