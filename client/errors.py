"""Typed errors: what the server answered ({"error": {"code", "message"}}), or why it could not
be reached. Whether a retry may help is part of the type. Every answer, error line and transport
failure becomes its typed error here, for both clients."""

from __future__ import annotations

import json
from typing import Any

import httpx

from contract.errors import ServiceError  # the server's table of error codes (no dependencies)


class GanClientError(Exception):
    """Base of every error this library raises."""

    retryable: bool = False


class ServerUnreachable(GanClientError):
    """No HTTP answer: connection refused or reset, a timeout, a broken response."""

    retryable = True


class ApiError(GanClientError):
    """An HTTP error answer, with the server's error code and message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after  # seconds, from the Retry-After header
        self.request_id = request_id


class RequestRejected(ApiError):
    """A 4xx about the request itself (bad input, unknown model, too large): sending it again
    gives the same answer."""


class Overloaded(ApiError):
    """429, 503, 502 or 504: the server (or a proxy in front of it) is busy, starting or draining,
    or could not meet the deadline. Worth retrying after a pause (Retry-After when given)."""

    retryable = True


class ServerFailed(ApiError):
    """Any other 5xx: the server failed on this request."""


RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


def error_from_response(status: int, body: bytes, headers: dict[str, str]) -> ApiError:
    """The typed error for a non-2xx answer; tolerant of bodies that are not ours (a proxy's)."""
    code, message = "http_error", body[:200].decode("utf-8", "replace").strip() or f"HTTP {status}"
    try:
        error = json.loads(body)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        pass
    retry_after = _seconds(headers.get("retry-after"))
    request_id = headers.get("x-request-id")
    kind: type[ApiError]
    if status in RETRYABLE_STATUSES:
        kind = Overloaded
    elif 400 <= status < 500:
        kind = RequestRejected
    else:
        kind = ServerFailed
    return kind(status, code, message, retry_after, request_id)


def check(response: httpx.Response) -> httpx.Response:
    """The answer, if a success; else its typed error, raised (the body must have been read)."""
    if response.is_success:
        return response
    raise error_from_response(response.status_code, response.content, dict(response.headers))


def unreachable(url: str, failure: httpx.TransportError | GanClientError) -> GanClientError:
    """A try's failure as this library's error: no answer at all is ServerUnreachable."""
    return ServerUnreachable(f"{url}: {failure}") if isinstance(failure, httpx.TransportError) else failure


def _statuses(kind: type[ServiceError] = ServiceError) -> dict[str, int]:
    """Every service error code -> its HTTP status (the server's own table, contract.errors)."""
    table = {kind.code: kind.status}
    for sub in kind.__subclasses__():
        table |= _statuses(sub)
    return table


STATUS_OF_CODE = _statuses()


def stream_error(line: dict[str, Any]) -> ApiError:
    """The error a stream ended with, after some of it was sent: typed as its status would be."""
    error = line["error"]
    status = STATUS_OF_CODE.get(str(error.get("code")), 500)
    return error_from_response(status, json.dumps({"error": error}).encode(), {})


def midstream(error: GanClientError) -> GanClientError:
    """Marks an error that ended a stream after it began (a stream is not retried then: what was
    handed on stands; a call that can ask again from the start may, as upscale does)."""
    error.midstream = True  # type: ignore[attr-defined]
    return error


def _seconds(value: str | None) -> float | None:
    """Retry-After as seconds (the delta-seconds form; an HTTP date is ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
