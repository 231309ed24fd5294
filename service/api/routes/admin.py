"""The admin API: load and unload model versions, roll back, run a canary, sync with the repository.

Off (404) unless GAN_SERVE_ADMIN_KEYS is set; every call must then carry an admin key (X-API-Key or
Authorization: Bearer). What an operator does here outlasts the repository syncs (a version loaded
stays loaded, an unloaded one stays out, until said otherwise) but not a restart: the repository
and GAN_SERVE_VERSION_POLICY are what a restarted server serves.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from contract.errors import InvalidRequest, UnknownModel
from model_repository.repository import NAME_PATTERN
from service.api.auth import admin_refusal
from service.api.responses import ERRORS, json_response
from service.lifecycle.registry import ModelRegistry

VersionNumber = Annotated[int, Field(ge=1, le=999_999_999)]
Name = Annotated[str, Path(description="the model's name", max_length=64)]


class VersionChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: VersionNumber | None = Field(None, description="the version (default: see each call)")


class CanaryChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: VersionNumber | None = Field(None, description="the canary version; null ends the canary")
    share: float = Field(0.1, ge=0, le=1, description="share of unpinned requests, by seed; 0 ends it")


ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    **{code: ERRORS[code] for code in (400, 404, 422)},
    401: {"model": ERRORS[400]["model"], "description": "no admin key"},
    403: {"model": ERRORS[400]["model"], "description": "the key is not an admin key"},
}


def router(registry: ModelRegistry, admin_keys: list[bytes]) -> APIRouter:
    async def require_admin(request: Request) -> None:
        # service.api.auth.AdminGuard checks first, before the body is read; this holds for the
        # app on its own too.
        refusal = admin_refusal(request.scope, admin_keys)
        if refusal is not None:
            raise refusal

    api = APIRouter(
        prefix="/v1", dependencies=[Depends(require_admin)], tags=["admin"], responses=ADMIN_ERRORS
    )

    def state(name: str) -> Response:
        return json_response({"model": name, **registry.version_states().get(name, {})})

    @api.post("/models/{name}/load")
    async def load(name: Name, body: Annotated[VersionChoice | None, Body()] = None) -> Response:
        """Load a version (default: the newest published), verify and warm it up, put it in
        service, and keep it loaded whatever the version policy says, until unloaded."""
        name = checked(name)
        version = body.version if body is not None else None
        if version is None:
            await registry.sync()  # the newest published, as the repository is now
            published = sorted(registry.published.get(name, {}))
            if not published:
                raise UnknownModel(f"model {name!r} has no published version in the repository")
            version = published[-1]
        await registry.hold(name, version)
        return state(name)

    @api.post("/models/{name}/unload")
    async def unload(name: Name, body: Annotated[VersionChoice | None, Body()] = None) -> Response:
        """Take a version (default: every loaded version) out of service and release it; requests
        holding it finish on it. It stays out until loaded again."""
        name = checked(name)
        await registry.drop(name, [body.version] if body is not None and body.version is not None else None)
        return state(name)

    @api.post("/models/{name}/default")
    async def default(name: Name, body: VersionChoice) -> Response:
        """Requests that pin no version get this one (a rollback; loaded first if it is not);
        version null: the newest loaded again."""
        name = checked(name)
        await registry.make_default(name, body.version)
        return state(name)

    @api.post("/models/{name}/canary")
    async def canary(name: Name, body: CanaryChoice) -> Response:
        """Send a share of the requests that pin no version to another version (loaded first if it
        is not), chosen by a hash of the seed: a seed always lands on the same version."""
        name = checked(name)
        await registry.set_canary(name, body.version, body.share)
        return state(name)

    @api.post("/repository/sync")
    async def sync() -> Response:
        """Look at the repository now (as a poll or SIGHUP does) and answer what is served."""
        await registry.sync()
        body: dict[str, Any] = {"models": registry.version_states(), "failed": registry.failures}
        return json_response(body)

    return api


def checked(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise InvalidRequest("a model name is 1-64 lowercase letters, digits, '.', '_' or '-'")
    return name
