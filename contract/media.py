"""The one table of image formats and media types, and HTTP content negotiation over it.

Standard library only: the client library (which installs neither pydantic nor Pillow) imports it
too, so the server and its clients cannot disagree on a media type.
"""

from __future__ import annotations

from collections.abc import Sequence

# Output formats -> media types. png and npy are lossless; npy keeps the (H, W, C) uint8 array.
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "npy": "application/x-npy"}
FORMATS = tuple(MEDIA_TYPES)
FORMAT_OF_MEDIA_TYPE = {media: fmt for fmt, media in MEDIA_TYPES.items()}
# Formats an upscaler accepts as input (npy is output only).
UPLOAD_FORMATS = ("png", "jpeg", "webp")
UPLOAD_MEDIA_TYPES = {MEDIA_TYPES[fmt]: fmt for fmt in UPLOAD_FORMATS}
JSON = "application/json"
# /walk's animated answers (`animation`) -> media types: one file of all the frames, looping.
ANIMATION_MEDIA_TYPES = {"webp": "image/webp", "gif": "image/gif", "apng": "image/apng"}
ANIMATIONS = tuple(ANIMATION_MEDIA_TYPES)


def media_type(content_type: str | None) -> str:
    """'Image/PNG; charset=x' -> 'image/png' ('' for none)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def sniff_format(data: bytes) -> str | None:
    """The upload format of image bytes, from their first bytes (not a file name), or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def parse_accept(header: str) -> list[tuple[str, float]]:
    """An Accept header as (media range, q) in the header's order; q=0 ranges are kept (they
    exclude). A malformed q counts as 1, as most servers treat it."""
    ranges: list[tuple[str, float]] = []
    for part in header.split(","):
        media, *params = part.split(";")
        media = media.strip().lower()
        if not media:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = min(1.0, max(0.0, float(value)))
                except ValueError:
                    q = 1.0
        ranges.append((media, q))
    return ranges


def negotiate(accept: str | None, offers: Sequence[str]) -> str | None:
    """The offered media type the client prefers (RFC 9110 12.5.1), or None when it accepts none.

    Each offer gets the q of the most specific range that matches it (type/subtype, then type/*,
    then */*); the highest q wins, ties going to the range the client listed first, then to the
    offer listed first. No Accept header accepts anything: the first offer."""
    if not accept or not accept.strip():
        return offers[0] if offers else None
    ranges = parse_accept(accept)
    best: tuple[float, int, int] | None = None
    chosen = None
    for rank, offer in enumerate(offers):
        kind = offer.split("/", 1)[0]
        match: tuple[int, float, int] | None = None  # (specificity, q, position in the header)
        for position, (media, q) in enumerate(ranges):
            specificity = 3 if media == offer else 2 if media == f"{kind}/*" else 1 if media == "*/*" else 0
            if specificity and (match is None or specificity > match[0]):
                match = (specificity, q, position)
        if match is None or match[1] <= 0:
            continue
        key = (-match[1], match[2], rank)
        if best is None or key < best:
            best, chosen = key, offer
    return chosen


def offers_for(preferred: str, formats: Sequence[str] = FORMATS) -> list[str]:
    """The media types of `formats`, the preferred format's first (when it is one of them): what
    an answer of image bytes may be, in the order a tie between them is broken."""
    return sorted((MEDIA_TYPES[f] for f in formats), key=lambda media: media != MEDIA_TYPES[preferred])
