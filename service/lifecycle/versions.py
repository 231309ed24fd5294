"""Which versions of a model are served, and which one answers a request.

Which versions are loaded is the version policy's (model_repository.version_policy).
`ServedVersions` holds one model's loaded versions and routes a request to one of them: the
version it pins (`"model": "name@3"`), else the default (the newest loaded, unless an operator has
rolled back to another), or the canary, for a share of unpinned requests chosen by a hash of the
request's seed, so that a seed always lands on the same version. No I/O here: the registry loads
and retires the versions.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

from contract.errors import InvalidRequest, UnknownModel
from model_repository.repository import VERSION_PATTERN
from service.served.model import ServedModel

_MODEL_REF = re.compile(r"^(?P<name>[^@]*)(?:@(?P<version>[^@]*))?\Z")


def parse_model_ref(ref: str) -> tuple[str, int | None]:
    """'name' -> (name, None); 'name@3' -> (name, 3). The name is checked by the registry."""
    match = _MODEL_REF.match(ref)
    version = match["version"] if match else None
    if match is None or (version is not None and not VERSION_PATTERN.match(version)):
        raise InvalidRequest(
            "a model is named NAME or NAME@VERSION, the version a positive integer (e.g. digits@3)"
        )
    return match["name"], None if version is None else int(version)


def canary_point(key: int) -> float:
    """Where a seed falls in [0, 1), the same in every process (unlike hash()): a seed below the
    canary's share goes to the canary."""
    digest = hashlib.blake2b(str(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True)
class Canary:
    version: int
    share: float  # of unpinned requests, 0 < share <= 1


class ServedVersions:
    """One model's loaded versions, and which one answers a request."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.versions: dict[int, ServedModel] = {}
        self.default: int | None = None  # set by an operator (a rollback); None: the newest
        self.canary: Canary | None = None

    def __bool__(self) -> bool:
        return bool(self.versions)

    def serving(self) -> ServedModel:
        """The version unpinned requests get (besides the canary's share)."""
        if self.default is not None and self.default in self.versions:
            return self.versions[self.default]
        return self.versions[max(self.versions)]

    def pick(self, version: int | None, key: int | None) -> ServedModel:
        """The version that answers a request: `version` when pinned; else the canary for its
        share of requests (by the seed `key`; a random share of those without a seed), else the
        default."""
        if version is not None:
            model = self.versions.get(version)
            if model is None:
                raise UnknownModel(
                    f"model {self.name!r} has no version {version} loaded; loaded: {self.listing()}"
                )
            return model
        canary = self.canary
        if canary is not None and canary.version in self.versions:
            point = canary_point(key) if key is not None else random.random()
            if point < canary.share:
                return self.versions[canary.version]
        return self.serving()

    def add(self, model: ServedModel) -> ServedModel | None:
        """Put a version in service; the model it replaces (the same version reloaded), if any."""
        old = self.versions.get(model.version)
        self.versions[model.version] = model
        return old if old is not model else None

    def remove(self, version: int) -> ServedModel | None:
        """Take a version out of service; a default or canary that named it is dropped."""
        model = self.versions.pop(version, None)
        if self.default == version:
            self.default = None
        if self.canary is not None and self.canary.version == version:
            self.canary = None
        return model

    def listing(self) -> str:
        return ", ".join(map(str, sorted(self.versions))) or "none"

    def role(self, version: int) -> str | None:
        """'default', 'canary' or None: what a loaded version does for unpinned requests."""
        if self.versions and self.serving().version == version:
            return "default"
        if self.canary is not None and self.canary.version == version:
            return "canary"
        return None
