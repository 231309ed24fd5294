"""The playground's files as the server hands them out (no browser here; that is
test_playground_browser.py): every file the page loads is served, cached by ETag, kept to this
server by its Content-Security-Policy, open without an API key, and gone when turned off."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

from service.api.playground import load_assets
from tests.live_server import Server


def test_the_page_and_every_file_it_loads(server: Server) -> None:
    page = httpx.get(f"{server.url}/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    # Everything the HTML names, and everything the modules import, comes from this server.
    wanted = set(re.findall(r'(?:src|href)="(/playground/[^"]+)"', page.text))
    seen: set[str] = set()
    while wanted - seen:
        path = sorted(wanted - seen)[0]
        seen.add(path)
        r = httpx.get(f"{server.url}{path}", timeout=10)
        assert r.status_code == 200, path
        if path.endswith(".js"):
            assert r.headers["content-type"] == "text/javascript; charset=utf-8"
            wanted |= {"/playground/" + name for name in re.findall(r'from "\./([^"]+)"', r.text)}
    assert {"/playground/playground.js", "/playground/api.js", "/playground/metrics.js"} <= seen
    assert not re.search(r"https?://", page.text.replace("http://www.w3.org", "")), "no outside assets"
    assert set(load_assets()) == {"/", *seen}, "every packaged file is used, every used file packaged"


def test_etag_revalidation_and_head(server: Server) -> None:
    first = httpx.get(f"{server.url}/playground/playground.css", timeout=10)
    again = httpx.get(
        f"{server.url}/playground/playground.css",
        headers={"If-None-Match": first.headers["etag"]},
        timeout=10,
    )
    assert again.status_code == 304 and again.content == b""
    assert first.headers["cache-control"] == "no-cache"  # revalidated each time: a new release shows
    head = httpx.head(f"{server.url}/", timeout=10)
    assert head.status_code == 200 and head.content == b""
    missing = httpx.get(f"{server.url}/playground/nope.js", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_turned_off_and_open_without_a_key(make_server: Callable[..., Server]) -> None:
    off = make_server(["digits"], playground="false")
    assert httpx.get(f"{off.url}/", timeout=10).status_code == 404
    assert httpx.get(f"{off.url}/playground/playground.js", timeout=10).status_code == 404

    key = "k" * 24
    keyed = make_server(["digits"], api_keys=key)
    assert httpx.get(f"{keyed.url}/", timeout=10).status_code == 200  # the page holds no data
    assert httpx.get(f"{keyed.url}/playground/api.js", timeout=10).status_code == 200
    assert httpx.get(f"{keyed.url}/v1/models", timeout=10).status_code == 401  # its API calls need one
    models = httpx.get(f"{keyed.url}/v1/models", headers={"X-API-Key": key}, timeout=10)
    assert models.status_code == 200
