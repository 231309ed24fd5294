"""Which published versions of a model a server keeps loaded (Triton's version policy): the latest
N, all, or listed versions; one default and per-model exceptions, as GAN_SERVE_VERSION_POLICY
writes them. Parsing only, no I/O: the service's settings check the text with it."""

from __future__ import annotations

from dataclasses import dataclass

from model_repository.repository import NAME_PATTERN, VERSION_PATTERN

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
