"""The served models by name, and the service's readiness.

At start-up the newest published version of every model in the repository is loaded, started and
warmed up, one after another, then put in service; a version that fails is reported (log,
/readyz, /v1/models, the gan_model_load_failed metric) and the others serve. Putting a model in
service replaces the one of the same name at once (a dictionary assignment on the event loop), and
the replaced one is retired after: requests already holding it finish on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from model_repository.repository import NAME_PATTERN, list_models, list_versions
from service.config import Settings
from service.errors import InvalidRequest, NotReady, UnknownModel
from service.metrics import ServiceMetrics
from service.runtime import choose_providers
from service.served import ServedModel, load_model

log = logging.getLogger("gan.registry")

M = TypeVar("M", bound=ServedModel)


def resident_bytes() -> int:
    """This process's resident memory (Linux; 0 elsewhere), after glibc has handed back the free
    memory it keeps (malloc_trim): freed buffers would otherwise count for the next model."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class ModelRegistry:
    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.models: dict[str, ServedModel] = {}
        self._names: dict[type[ServedModel], list[str]] = {}  # by kind, sorted; reset on every change
        self.failures: dict[str, str] = {}  # model name (or "*" for the repository) -> reason
        self.started = False
        self.draining = False
        # Uploads are decoded and images encoded here, off the event loop.
        self.encode_pool = ThreadPoolExecutor(settings.encode_threads, thread_name_prefix="encode")

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load, start and warm up the newest version of every model in the repository."""
        repo = self.settings.models_dir
        if not repo.is_dir():
            self._failed("*", f"model repository {repo} does not exist")
        else:
            providers = choose_providers(self.settings.provider)  # once: it warns when CUDA is missing
            for name in list_models(repo):
                versions = list_versions(repo, name)
                if versions:
                    await self.load(name, versions[-1], providers)
        self.started = True

    async def load(self, name: str, version: int, providers: list[Any] | None = None) -> ServedModel | None:
        """Create, start and warm up one model version, then put it in service (replacing the
        version served under its name, which is retired). None when it fails: reported, and the
        version served before, if any, goes on serving."""
        loop = asyncio.get_running_loop()
        before = await loop.run_in_executor(None, resident_bytes)  # malloc_trim: off the event loop
        try:
            model = await loop.run_in_executor(
                None,
                load_model,
                self.settings.models_dir,
                name,
                version,
                self.settings,
                self.metrics,
                self.encode_pool,
                providers if providers is not None else choose_providers(self.settings.provider),
            )
        except Exception as e:  # a broken model must not stop the others: report it, go on
            self._failed(name, f"version {version}: {e}")
            return None
        model.start()
        if self.settings.warmup:
            try:
                await loop.run_in_executor(None, model.warm_up)
            except Exception as e:
                await model.retire()
                self._failed(name, f"version {version}: the warm-up run failed: {e}")
                return None
        model.memory_bytes = max(0, await loop.run_in_executor(None, resident_bytes) - before)
        await self.put_in_service(model)
        return model

    async def put_in_service(self, model: ServedModel) -> None:
        """Serve `model` under its name from now on; the model it replaces is retired."""
        old = self.models.get(model.name)
        self.models[model.name] = model
        self._names.clear()
        self.failures.pop(model.name, None)
        self.metrics.model_failures.labels(model.name).set(0)
        self.metrics.model_info.labels(
            model.name, str(model.version), model.task, model.runtime.provider
        ).set(1)
        self.metrics.model_memory.labels(model.name, str(model.version)).set(model.memory_bytes)
        if old is not None and old is not model:
            await self.retire(old)

    async def retire(self, model: ServedModel) -> None:
        """Take `model` out of service: no new request gets it; those it is answering finish on
        it (for up to graceful_timeout_s), then its lanes end and its memory is released."""
        if self.models.get(model.name) is model:
            del self.models[model.name]
            self._names.clear()
        current = self.models.get(model.name)
        same_series = current is not None and (current.version, current.runtime.provider) == (
            model.version,
            model.runtime.provider,
        )
        if not same_series:  # its series go with it (unless its successor has the very same labels)
            with contextlib.suppress(KeyError):
                self.metrics.model_info.remove(
                    model.name, str(model.version), model.task, model.runtime.provider
                )
                self.metrics.model_memory.remove(model.name, str(model.version))

        await model.retire(self.settings.graceful_timeout_s)

    async def stop(self) -> None:
        """At shutdown (uvicorn has let the requests in flight finish): queued work is refused,
        running batches end and answer, the lanes end."""
        for model in list(self.models.values()):
            await model.retire()
        self.encode_pool.shutdown(wait=True)

    def _failed(self, name: str, reason: str) -> None:
        self.failures[name] = reason
        self.metrics.model_failures.labels(name).set(1)
        log.error("not serving %s: %s", name, reason)

    # --- lookups ----------------------------------------------------------------------------------

    def resolve(self, name: str | None, kind: type[M]) -> M:
        """The served model of this kind called `name` (None: the first by name)."""
        if not self.started:
            raise NotReady("the service is starting")
        model = self.models.get(name) if name is not None else None
        if isinstance(model, kind):  # the usual case first: it runs on every request
            return model
        served = self.names(kind)
        listed = ", ".join(served) or "none"
        if name is None:
            if not served:
                raise UnknownModel(f"no {kind.kind_name} model is served")
            return self.resolve(served[0], kind)
        if not NAME_PATTERN.match(name) or ".." in name:  # never echo an arbitrary string
            raise InvalidRequest(
                "a model name is 1-64 characters: lowercase letters, digits, '.', '_', '-', starting with "
                f"a letter or digit; {kind.kind_name} models served: {listed}"
            )
        if model is None:
            raise UnknownModel(f"unknown model {name!r}; {kind.kind_name} models served: {listed}")
        raise InvalidRequest(
            f"model {name!r} is {_article(model.kind_name)} {model.kind_name} model; "
            f"{kind.kind_name} models served: {listed}"
        )

    def names(self, kind: type[ServedModel]) -> list[str]:
        """The served models of this kind, by name (asked for on every request that names none:
        kept until the served models change)."""
        names = self._names.get(kind)
        if names is None:
            names = self._names[kind] = sorted(n for n, m in self.models.items() if isinstance(m, kind))
        return names

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        ready = self.started and not self.draining and not self.failures and bool(self.models)
        if self.draining:
            state = "draining"
        elif not self.started:
            state = "starting"
        else:
            state = "ready" if ready else "degraded"
        return ready, {
            "status": state,
            "models": {
                name: {"version": m.version, "provider": m.runtime.provider}
                for name, m in self.models.items()
            },
            "failed": self.failures,
        }

    def infos(self) -> list[dict[str, Any]]:
        return [self.models[name].info() for name in sorted(self.models)]

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
