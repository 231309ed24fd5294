"""Optional API-key authentication, in front of every route (the hot path included).

With keys configured (GAN_SERVE_API_KEYS, comma-separated, and/or GAN_SERVE_API_KEYS_FILE, one
per line), a request must carry one in `X-API-Key` or as `Authorization: Bearer KEY`, else it
gets 401 with the usual error body. Health (/healthz, /readyz) and /metrics stay open unless
`auth_health` / `auth_metrics` say otherwise (load balancers and Prometheus usually have no key);
the API documentation and the playground's files stay open (they hold no data: the page asks for a
key and sends it with its API calls). Keys are compared in constant time, against every configured
key, so neither the answer's timing nor its content says how much of a key was right.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from contract.errors import AdminOff, Forbidden, ServiceError, Unauthorized
from service.api.errors import error_answer, error_response
from service.config import Settings

HEALTH_PATHS = frozenset({"/healthz", "/readyz"})
DOC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


def load_api_keys(settings: Settings) -> list[bytes]:
    """The configured keys (empty: authentication is off). A keys file that cannot be read, or a
    key that is too short to be a secret, stops the service at start-up rather than serving open."""
    keys = [k.strip() for k in settings.api_keys.split(",") if k.strip()]
    if settings.api_keys_file is not None:
        path = Path(settings.api_keys_file)
        try:
            lines = path.read_text().splitlines()
        except OSError as e:
            raise ValueError(f"cannot read the API keys file {path}: {e}") from e
        keys += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not keys:
            raise ValueError(f"the API keys file {path} holds no key")
    return _checked(keys, "API")


def load_admin_keys(settings: Settings) -> list[bytes]:
    """The admin API's keys (empty: the admin API is off). An admin key is also an API key."""
    return _checked([k.strip() for k in settings.admin_keys.split(",") if k.strip()], "admin")


def _checked(keys: list[str], what: str) -> list[bytes]:
    short = [k for k in keys if len(k) < 16]
    if short:
        raise ValueError(f"{len(short)} {what} key(s) shorter than 16 characters; use long random keys")
    return [k.encode() for k in keys]


def presented_key(scope: Scope) -> bytes | None:
    """The key a request carries, in X-API-Key or as Authorization: Bearer."""
    for name, value in scope["headers"]:
        if name == b"x-api-key":
            return bytes(value.strip())
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            return bytes(value[7:].strip())
    return None


def key_matches(presented: bytes | None, keys: list[bytes]) -> bool:
    """Compared with every key, always: the time taken does not say which matched, or how much."""
    if not presented:
        return False
    match = False
    for key in keys:
        match |= hmac.compare_digest(presented, key)
    return match


class ApiKeyAuth:
    def __init__(
        self,
        app: ASGIApp,
        keys: list[bytes],
        protect_health: bool,
        protect_metrics: bool,
        static_paths: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.keys = keys
        self.open_paths = set(DOC_PATHS) | static_paths
        if not protect_health:
            self.open_paths |= HEALTH_PATHS
        if not protect_metrics:
            self.open_paths.add("/metrics")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        if key_matches(presented_key(scope), self.keys):
            await self.app(scope, receive, send)
            return
        response = error_response(
            401, "unauthorized", "a valid API key is needed: send it as X-API-Key or Authorization: Bearer"
        )
        response.headers["WWW-Authenticate"] = 'Bearer realm="gan-serving"'
        await response(scope, receive, send)


ADMIN_VERBS = frozenset({"load", "unload", "default", "canary"})


def is_admin_path(path: str) -> bool:
    """/v1/models/NAME/{load,unload,default,canary} and /v1/repository/sync."""
    if path == "/v1/repository/sync":
        return True
    parts = path.split("/")  # ['', 'v1', 'models', NAME, VERB]
    return len(parts) == 5 and parts[1:3] == ["v1", "models"] and parts[4] in ADMIN_VERBS


def admin_refusal(scope: Scope, admin_keys: list[bytes]) -> ServiceError | None:
    """Why a request may not use the admin API (None: it may)."""
    if not admin_keys:
        return AdminOff("the admin API is off: set GAN_SERVE_ADMIN_KEYS to turn it on")
    presented = presented_key(scope)
    if presented is None:
        return Unauthorized("the admin API needs an admin key: send it as X-API-Key or Authorization: Bearer")
    if not key_matches(presented, admin_keys):
        return Forbidden("this key is not an admin key")
    return None


class AdminGuard:
    """The admin API's key check, before anything reads the request's body: a request without
    an admin key learns nothing, not even whether its body would have parsed."""

    def __init__(self, app: ASGIApp, admin_keys: list[bytes]) -> None:
        self.app = app
        self.admin_keys = admin_keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_admin_path(scope["path"]):
            refusal = admin_refusal(scope, self.admin_keys)
            if refusal is not None:
                await error_answer(refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)
