"""Which kind of answer a request gets, from its Accept header and its body: JSON, one image's
bytes, NDJSON, or an animated file. 406 (NotAcceptable) when the header allows none of them."""

from __future__ import annotations

from contract.errors import NotAcceptable
from contract.media import (
    ANIMATION_MEDIA_TYPES,
    FORMAT_OF_MEDIA_TYPE,
    JSON,
    MEDIA_TYPES,
    UPLOAD_FORMATS,
    negotiate,
    offers_for,
)
from service.api.stream import NDJSON


def wants_stream(accept: str | None, count: int, fmt: str) -> bool:
    """Accept prefers NDJSON to JSON (and, for one image, to the image itself); */* means JSON."""
    if not accept or NDJSON not in accept.lower():
        return False
    offers = [JSON, *offers_for(fmt)] if count == 1 else [JSON]
    return negotiate(accept, [*offers, NDJSON]) == NDJSON


def image_format(accept: str | None, count: int, fmt: str) -> str | None:
    """The image format to answer with as raw bytes, when the Accept header prefers one to JSON
    (only a single image can be sent so); None for JSON."""
    if not accept or accept == "*/*":
        return None
    images = offers_for(fmt)
    single = count == 1
    chosen = negotiate(accept, [JSON, *images] if single else [JSON])
    if chosen is None:
        if not single and negotiate(accept, images) is not None:
            raise NotAcceptable("a single image's bytes can be returned only for n=1; ask for JSON for more")
        offered = ", ".join([JSON, *images] if single else [JSON])
        raise NotAcceptable(
            f"the Accept header allows none of what this request can be answered with: {offered}"
        )
    return None if chosen == JSON else FORMAT_OF_MEDIA_TYPE[chosen]


def figure_format(accept: str | None, fmt: str) -> str | None:
    """/mix: the image format of the grid figure's bytes when Accept prefers one to JSON."""
    if not accept or accept == "*/*":
        return None
    images = offers_for(fmt, UPLOAD_FORMATS)  # a figure is an image file, never .npy
    chosen = negotiate(accept, [JSON, *images])
    if chosen is None:
        raise NotAcceptable(f"the Accept header allows none of: {', '.join([JSON, *images])}")
    return None if chosen == JSON else FORMAT_OF_MEDIA_TYPE[chosen]


def accept_animation(accept: str | None, animation: str) -> None:
    """406 when an Accept header is sent and excludes the animation's media type."""
    media = ANIMATION_MEDIA_TYPES[animation]
    if accept and negotiate(accept, [media]) is None:
        raise NotAcceptable(f"animation {animation} is answered as {media}, which the Accept header excludes")


def wants_progress(accept: str | None) -> bool:
    """/upscale: Accept prefers NDJSON to the image (*/* means the image)."""
    if not accept or NDJSON not in accept.lower():
        return False
    return negotiate(accept, [*MEDIA_TYPES.values(), NDJSON]) == NDJSON
