"""Which versions of a model are served, and which one answers a request.

`VersionPolicy` says which published versions the server keeps loaded (Triton's version policy:
the latest N, all, or listed versions). `ServedVersions` holds one model's loaded versions and
routes a request to one of them: the version it pins (`"model": "name@3"`), else the default (the
newest loaded, unless an operator has rolled back to another), or the canary, for a share of
unpinned requests chosen by a hash of the request's seed, so that a seed always lands on the same
version. No I/O here: the registry loads and retires the versions.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

from model_repository.repository import NAME_PATTERN, VERSION_PATTERN
from service.errors import InvalidRequest, UnknownModel
from service.served import ServedModel

MAX_LATEST = 1000


class PolicyError(ValueError):
    """A version policy setting that cannot be read."""


@dataclass(frozen=True)
class VersionPolicy:
    """The published versions to serve: the `latest` newest, or the `listed` ones, or all."""

    latest: int | None = 1
    listed: tuple[int, ...] = ()

    def select(self, published: list[int]) -> list[int]:
        """The versions to load, of those published (sorted oldest first)."""
        if self.listed:
            return [v for v in published if v in self.listed]
        if self.latest is None:
            return list(published)
        return published[-self.latest :]

    def __str__(self) -> str:
        if self.listed:
            return "versions:" + ",".join(map(str, self.listed))
        return "all" if self.latest is None else f"latest:{self.latest}"

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        """'latest:N', 'all', or 'versions:1,3'."""
        kind, _, arg = text.strip().partition(":")
        kind, arg = kind.strip(), arg.strip()
        if kind == "all" and not arg:
            return cls(latest=None)
        if kind == "latest" and arg.isascii() and arg.isdigit() and 1 <= int(arg) <= MAX_LATEST:
            return cls(latest=int(arg))
        if kind == "versions":
            items = [item.strip() for item in arg.split(",")]
            if items and all(VERSION_PATTERN.match(item) for item in items):
                return cls(latest=None, listed=tuple(sorted({int(item) for item in items})))
        raise PolicyError(
            f"version policy {text.strip()!r}: expected latest:N (N from 1 to {MAX_LATEST}), all, "
            "or versions:V[,V...]"
        )


@dataclass(frozen=True)
class VersionPolicies:
    """The default policy and the models that have their own."""

    default: VersionPolicy = VersionPolicy()
    models: tuple[tuple[str, VersionPolicy], ...] = ()

    def of(self, name: str) -> VersionPolicy:
        return dict(self.models).get(name, self.default)

    @classmethod
    def parse(cls, text: str) -> VersionPolicies:
        """'POLICY' for every model, and 'NAME=POLICY' for one, separated by ';':
        e.g. 'latest:1; digits=latest:2; faces=versions:3,5'."""
        default = VersionPolicy()
        models: dict[str, VersionPolicy] = {}
        for entry in (e.strip() for e in text.split(";")):
            if not entry:
                continue
            name, equals, policy = entry.partition("=")
            if not equals:
                default = VersionPolicy.parse(entry)
                continue
            name = name.strip()
            if not NAME_PATTERN.match(name):
                raise PolicyError(f"version policy {entry!r}: {name!r} is not a model name")
            models[name] = VersionPolicy.parse(policy)
        return cls(default, tuple(sorted(models.items())))


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
