"""Exceptions -> answers, in one place: every error leaves as {"error": {"code", "message"}}, with no
stack trace. The routes' own handlers (service.api.route) and FastAPI's exception handlers (for
what reaches the framework: unknown paths, methods, the docs) both answer through `error_answer`."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from contract.errors import ServiceError

log = logging.getLogger("gan.api")

HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 400: "invalid_request"}
CLIENT_CLOSED = 499  # nginx's "client closed request": only the access log and metrics see it


def error_response(
    status: int,
    code: str,
    message: str,
    retry_after: float | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    extra = dict(headers or {})
    if retry_after is not None:
        extra["Retry-After"] = str(math.ceil(retry_after))
    body = json.dumps({"error": {"code": code, "message": message}})
    return Response(body, status_code=status, media_type="application/json", headers=extra or None)


def validation_message(errors: Sequence[Any]) -> str:
    """pydantic errors -> 'field: problem; field: problem' (the body's own path, no 'body.')."""
    problems = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query")) or "body"
        problems.append(f"{where}: {err.get('msg')}")
    return "; ".join(problems)


def error_answer(exc: Exception, method: str = "", path: str = "") -> Response:
    """The answer to a request that raised `exc`."""
    if isinstance(exc, ServiceError):
        return error_response(exc.status, exc.code, exc.message, exc.retry_after)
    if isinstance(exc, ValidationError | RequestValidationError):
        return error_response(422, "invalid_request", validation_message(exc.errors()))
    if isinstance(exc, StarletteHTTPException):
        code = HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)
    if isinstance(exc, MultiPartException):  # a malformed form: the client's mistake
        return error_response(400, "invalid_request", f"the multipart form is malformed: {exc.message}")
    if isinstance(exc, ClientDisconnect):
        # The client left (or was timed out) before its body arrived: nobody reads the answer.
        return Response(status_code=CLIENT_CLOSED)
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return error_response(500, "internal_error", "internal error; see the server log")


def install_error_handlers(app: FastAPI) -> None:
    """What reaches the framework itself is answered the same way."""

    async def handler(request: Request, exc: Exception) -> Response:
        return error_answer(exc, request.method, request.url.path)

    for kind in (
        ServiceError,
        RequestValidationError,
        StarletteHTTPException,
        MultiPartException,
        ClientDisconnect,
        Exception,
    ):
        app.add_exception_handler(kind, handler)
