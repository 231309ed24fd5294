"""The playground page: GET / and its assets under /playground/, from files shipped in the package.

The page is static (HTML, CSS and ES modules, no build step, nothing fetched from elsewhere) and
talks to the same API a client uses. The files are read once, at start-up; each answer carries an
ETag so a browser revalidates with a 304 instead of downloading again, and a Content-Security-Policy
that lets the page load and call nothing but this server.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

PAGE_PATH = "/"
ASSET_PREFIX = "/playground/"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    # Same origin only; blob: and data: for the images the page makes from API answers.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """URL path -> file, for every file of service/playground (index.html answers GET /)."""
    assets: dict[str, Asset] = {}
    for entry in resources.files("service.playground").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if not entry.is_file() or suffix not in MEDIA_TYPES:
            continue
        body = entry.read_bytes()
        asset = Asset(body, MEDIA_TYPES[suffix], '"' + hashlib.sha256(body).hexdigest()[:20] + '"')
        assets[PAGE_PATH if entry.name == "index.html" else ASSET_PREFIX + entry.name] = asset
    if PAGE_PATH not in assets:
        raise RuntimeError("the playground's index.html is missing from the installed package")
    return assets


def playground_routes(assets: dict[str, Asset]) -> list[BaseRoute]:
    """GET (and HEAD) routes for each asset."""

    def endpoint(asset: Asset) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            headers = {"ETag": asset.etag, "Cache-Control": "no-cache", **SECURITY_HEADERS}
            if asset.etag in request.headers.get("if-none-match", ""):
                return Response(status_code=304, headers=headers)
            return Response(asset.body, media_type=asset.media_type, headers=headers)

        return serve

    return [
        Route(path, endpoint(asset), methods=["GET", "HEAD"], include_in_schema=False)
        for path, asset in assets.items()
    ]
