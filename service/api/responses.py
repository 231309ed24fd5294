"""What the routes' answers share: the documented error statuses and a compact JSON response."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from service.schemas.answers import ErrorBody

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "invalid request (unknown label, too many images, ...)",
        404: "unknown model",
        406: "the Accept header allows no answer this request can have (e.g. image bytes for n > 1)",
        413: "body too large",
        422: "the body does not match the schema",
        429: "queue full; see Retry-After",
        503: "not ready (starting or draining)",
        504: "the deadline cannot be met",
    }.items()
}


def json_response(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(
        json.dumps(payload, separators=(",", ":")), status_code=status, media_type="application/json"
    )
