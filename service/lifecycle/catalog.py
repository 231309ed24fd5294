"""What the repository publishes, what is served and what failed, and what is read from them:
the served model that answers a request (`resolve`), the listings of GET /v1/models and the admin
API, and /readyz's readiness.

`ModelCatalog` holds that state and only reads it; its subclass `ModelRegistry`
(service.lifecycle.registry) is the one writer: it loads, serves, rolls back and retires versions.
Routes that only look models up need nothing more than this class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from contract.errors import InvalidRequest, NotReady, UnknownModel
from model_repository.manifest import MANIFEST_FILE
from model_repository.repository import NAME_PATTERN, list_models, list_versions, version_dir
from model_repository.version_policy import VersionPolicies
from service.config import Settings
from service.lifecycle.interfaces import VersionInterfaces
from service.lifecycle.versions import ServedVersions, parse_model_ref
from service.metrics import ServiceMetrics
from service.served.model import ServedModel

M = TypeVar("M", bound=ServedModel)
Fingerprint = tuple[int, int, int]  # the version's manifest: inode, size, mtime (ns)
REPOSITORY = "*"  # the failures key of a repository that cannot be read


def scan(repo: Path) -> dict[str, dict[int, Fingerprint]]:
    """The published versions of every model, each with its manifest's fingerprint: a version
    republished in place (`--replace`) is a new directory, so a new inode. Blocking."""
    published: dict[str, dict[int, Fingerprint]] = {}
    for name in list_models(repo):
        versions: dict[int, Fingerprint] = {}
        try:
            listed = list_versions(repo, name)
        except OSError:  # the model's directory went away while being listed: as if removed
            listed = []
        for version in listed:
            found = fingerprint(repo, name, version)
            if found is not None:  # (None: removed while being listed)
                versions[version] = found
        published[name] = versions
    return published


def fingerprint(repo: Path, name: str, version: int) -> Fingerprint | None:
    """A published version's manifest fingerprint; None when the version is not there. Blocking."""
    try:
        st = (version_dir(repo, name, version) / MANIFEST_FILE).stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class ModelCatalog:
    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.policies = VersionPolicies.parse(settings.version_policy)
        self.served: dict[str, ServedVersions] = {}
        self._names: dict[type[ServedModel], list[str]] = {}  # by kind, sorted; reset on every change
        self.published: dict[str, dict[int, Fingerprint]] = {}  # as the last sync saw the repository
        self.interfaces = VersionInterfaces()  # of the published versions, for /v1/models
        self.synced_at: float | None = None  # time.time() of the last sync
        self.loading: dict[str, set[int]] = {}
        # Versions that failed, with the fingerprint of the files that failed: tried again only
        # once those change (or an operator asks), not at every poll.
        self._failed: dict[tuple[str, int], tuple[Fingerprint | None, str]] = {}
        self._repository_failure: str | None = None
        # The operator's word (admin API), over the policy: versions kept loaded, versions kept out.
        self.held: dict[str, set[int]] = {}
        self.excluded: dict[str, set[int]] = {}
        self.started = False
        self.draining = False

    # --- lookups ----------------------------------------------------------------------------------

    def resolve(self, ref: str | None, kind: type[M], key: int | None = None) -> M:
        """The served model of this kind that answers a request for `ref` ('name', 'name@3', or
        None: the first by name); `key`, the request's seed, picks the canary's share."""
        if not self.started:
            raise NotReady("the service is starting")
        if ref is None:
            served = self.names(kind)
            if not served:
                raise UnknownModel(f"no {kind.kind_name} model is served")
            name, version = served[0], None
        elif "@" in ref:
            name, version = parse_model_ref(ref)
        else:
            name, version = ref, None
        series = self.served.get(name)
        if series is None:
            listed = ", ".join(self.names(kind)) or "none"
            if not NAME_PATTERN.match(name) or ".." in name:  # never echo an arbitrary string
                raise InvalidRequest(
                    "a model name is 1-64 characters: lowercase letters, digits, '.', '_', '-', starting "
                    "with a letter or digit, and may end in @VERSION; "
                    f"{kind.kind_name} models served: {listed}"
                )
            raise UnknownModel(f"unknown model {name!r}; {kind.kind_name} models served: {listed}")
        model = series.pick(version, key)
        if isinstance(model, kind):  # the usual case
            return model
        if version is None and isinstance(series.serving(), kind):  # a canary of another kind
            return series.serving()  # type: ignore[return-value]
        listed = ", ".join(self.names(kind)) or "none"
        raise InvalidRequest(
            f"model {ref!r} is {_article(model.kind_name)} {model.kind_name} model; "
            f"{kind.kind_name} models served: {listed}"
        )

    def names(self, kind: type[ServedModel]) -> list[str]:
        """The served models whose default version is of this kind, by name (asked for on every
        request that names none: kept until the served models change)."""
        names = self._names.get(kind)
        if names is None:
            names = self._names[kind] = sorted(
                n for n, series in self.served.items() if isinstance(series.serving(), kind)
            )
        return names

    # --- readiness --------------------------------------------------------------------------------

    @property
    def failures(self) -> dict[str, str]:
        """Model name (or '*' for the repository) -> what failed, version by version."""
        out: dict[str, list[str]] = {}
        for (name, version), (_, reason) in sorted(self._failed.items()):
            out.setdefault(name, []).append(f"version {version}: {reason}")
        failures = {name: "; ".join(reasons) for name, reasons in out.items()}
        if self._repository_failure is not None:
            failures[REPOSITORY] = self._repository_failure
        return failures

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready once started, while not draining, when every model with a failed version still
        has a version serving (a new version that fails leaves the old one serving: ready)."""
        failures = self.failures
        # A repository that cannot be read for a moment (a remount) changes nothing served: only
        # before anything serves is it a reason not to be ready.
        unserved = [
            name for name in failures if name not in self.served and (name != REPOSITORY or not self.served)
        ]
        ready = self.started and not self.draining and not unserved and bool(self.served)
        if self.draining:
            state = "draining"
        elif not self.started:
            state = "starting"
        else:
            state = "ready" if ready else "degraded"
        return ready, {
            "status": state,
            "models": {
                name: {"version": series.serving().version, "provider": series.serving().runtime.provider}
                for name, series in self.served.items()
            },
            "failed": failures,
            # Serving, but not where asked: CUDA wanted, the CPU given (service.served.providers).
            "warnings": [
                f"{name}: {series.serving().runtime.fallback}"
                for name, series in sorted(self.served.items())
                if series.serving().runtime.fallback
            ],
        }

    # --- listings (GET /v1/models, the admin API) ---------------------------------------------------

    def infos(self) -> list[dict[str, Any]]:
        """Every loaded version, by name then version, each saying what it does for unpinned requests."""
        out = []
        for name in sorted(self.served):
            series = self.served[name]
            for version in sorted(series.versions):
                info = series.versions[version].info()
                role = series.role(version)
                info["state"] = "serving"
                info["default"] = role == "default"
                if role == "canary" and series.canary is not None:
                    info["canary_share"] = series.canary.share
                out.append(info)
        return out

    def version_states(self) -> dict[str, dict[str, Any]]:
        """Per model: its policy, what is published, loaded, loading, failed, the routing, and each
        published or loaded version's interface."""
        names = sorted(
            set(self.published) | set(self.served) | set(self.loading) | {k[0] for k in self._failed}
        )
        out: dict[str, dict[str, Any]] = {}
        for name in names:
            series = self.served.get(name)
            canary = series.canary if series is not None else None
            out[name] = {
                "policy": str(self.policies.of(name)),
                "published": sorted(self.published.get(name, {})),
                "loaded": sorted(series.versions) if series is not None else [],
                "loading": sorted(self.loading.get(name, set())),
                "failed": {
                    str(v): reason for (n, v), (_, reason) in sorted(self._failed.items()) if n == name
                },
                "default": series.serving().version if series else None,
                "rolled_back": series is not None and series.default is not None,
                "canary": None if canary is None else {"version": canary.version, "share": canary.share},
                "held": sorted(self.held.get(name, set())),
                "unloaded_by_admin": sorted(self.excluded.get(name, set())),
                "interfaces": self.interfaces.of(name, series.versions if series is not None else {}),
            }
        return out

    def limits(self) -> dict[str, int]:
        """The request limits a client must stay within (n and steps, upload size)."""
        return {
            "max_n": self.settings.max_n,
            "max_walk_steps": self.settings.max_n,
            "max_input_pixels": self.settings.max_input_pixels,
            "max_body_bytes": self.settings.max_body_bytes,
        }


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
