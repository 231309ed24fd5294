"""The registry: keeps the served models in step with the repository, and the operator's changes.

`sync()` serves, per model, the published versions its version policy (and the operator's loads,
unloads and rollbacks) says: a new or replaced version is verified, opened, started and warmed up
before it is put in service; an unwanted one leaves service once another version serves and is
retired in the background once the requests holding it finish. A version that fails is reported
and not tried again until its files change; the versions served before go on serving. Putting a
version in or out of service is a dictionary assignment on the event loop: atomic for requests.
Lookups and readiness are its base class's (service.lifecycle.catalog).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

from contract.errors import ModelLoadFailed, UnknownModel
from model_repository.repository import list_versions
from service.config import Settings
from service.lifecycle.catalog import Fingerprint, ModelCatalog, fingerprint, scan
from service.lifecycle.loading import load_model
from service.lifecycle.versions import Canary, ServedVersions
from service.metrics import ServiceMetrics
from service.served.admission import Shedding
from service.served.model import ServedModel
from service.served.providers import ProviderChoice, ProviderUnavailable, choose_providers, expected_provider
from service.served.runtime import plan_encode_threads, usable_cpus

log = logging.getLogger("gan.registry")


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


def info_labels(model: ServedModel) -> tuple[str, str, str, str]:
    """A served model's gan_model_info labels: model, version, task, provider."""
    return model.name, str(model.version), model.manifest_task, model.runtime.provider


class ModelRegistry(ModelCatalog):
    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        super().__init__(settings, metrics)
        self._fingerprints: dict[tuple[str, int], Fingerprint] = {}  # of each loaded version's files
        self._retiring: set[asyncio.Task[None]] = set()
        self._lock: asyncio.Lock | None = None  # one sync or admin change at a time
        self._providers: ProviderChoice | None = None
        # Uploads are decoded and images encoded here, off the event loop.
        threads = plan_encode_threads(settings, expected_provider(settings), usable_cpus())
        self.encode_pool = ThreadPoolExecutor(threads, thread_name_prefix="encode")
        self.shedding = Shedding()  # the served models' queues refusing all new work now
        metrics.before_render.append(self.shedding.__bool__)  # a drained queue's shedding ends

    # --- keeping in step with the repository ------------------------------------------------------

    @property
    def lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def start(self) -> None:
        """Load, start and warm up the versions to serve, as the policy says."""
        # Once, first: where inference runs (an operator's first sign that the GPU is used). With
        # provider_strict a CUDA that cannot be had raises here, and the service does not start.
        self._providers = choose_providers(self.settings)
        log.log(logging.ERROR if self._providers.fallback else logging.INFO, "%s", self._providers.summary())
        await self.sync()
        self.started = True

    async def sync(self) -> None:
        """Serve what the repository and the policy say (see the module's docstring)."""
        async with self.lock:
            await self._sync()

    async def _sync(self) -> None:
        repo = self.settings.models_dir
        try:
            if not repo.is_dir():
                raise OSError("it does not exist or is not a directory")
            published = await asyncio.get_running_loop().run_in_executor(None, scan, repo)
        except OSError as e:  # unreadable (an unmounted volume?): change nothing, say why
            reason = f"cannot read the model repository {repo}: {e}"
            if reason != self._repository_failure:
                log.error("%s", reason)
            self._repository_failure = reason
            return
        self._repository_failure = None
        await asyncio.get_running_loop().run_in_executor(None, self.interfaces.refresh, repo, published)
        self.published = published
        self.synced_at = time.time()
        for name in sorted(set(published) | set(self.served)):
            await self._reconcile(name, published.get(name, {}))
        # A failure of a version that is gone from the repository is no longer news.
        for key in [k for k in self._failed if k[1] not in published.get(k[0], {})]:
            del self._failed[key]
            self._report_failures(key[0])

    def wanted(self, name: str, published: dict[int, Fingerprint]) -> set[int]:
        """The published versions of `name` to serve: the policy's, those the operator loaded or
        made the default or the canary, less those the operator unloaded."""
        excluded = self.excluded.get(name, set())
        candidates = sorted(v for v in published if v not in excluded)  # the policy's choice among these
        wanted = set(self.policies.of(name).select(candidates))
        wanted |= self.held.get(name, set())
        series = self.served.get(name)
        if series is not None:  # a rollback's or a canary's version stays while it is one
            wanted |= {v for v in (series.default, series.canary and series.canary.version) if v}
        return wanted & set(candidates)

    async def _reconcile(self, name: str, published: dict[int, Fingerprint]) -> None:
        wanted = self.wanted(name, published)
        for version in sorted(wanted, reverse=True):  # the newest first: it is the default
            fingerprint = published[version]
            if self._fingerprints.get((name, version)) == fingerprint:
                continue  # loaded, from these very files
            failed = self._failed.get((name, version))
            if failed is not None and failed[0] == fingerprint:
                continue  # failed from these very files: reported already
            await self._load(name, version, fingerprint)
        series = self.served.get(name)
        if series is None:
            return
        serving_wanted = any(v in wanted for v in series.versions)
        for version in sorted(set(series.versions) - wanted):
            # Kept until a wanted version serves (a new version that failed leaves the old one
            # serving), unless its files are gone or the operator unloaded it.
            if serving_wanted or version not in published or version in self.excluded.get(name, set()):
                await self.unload(name, version)

    async def load(self, name: str, version: int) -> ServedModel | None:
        """Load, warm up and put in service one published version, whatever the policy says (the
        next sync unloads it if the policy does not want it). None when it fails: reported."""
        repo = self.settings.models_dir
        found = await asyncio.get_running_loop().run_in_executor(None, fingerprint, repo, name, version)
        if found is None:
            self._failed_to_load(name, version, None, "it is not published in the repository")
            return None
        return await self._load(name, version, found)

    async def _load(self, name: str, version: int, fingerprint: Fingerprint) -> ServedModel | None:
        loop = asyncio.get_running_loop()
        self.loading.setdefault(name, set()).add(version)
        try:
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
                    self.shedding,
                    self._providers or choose_providers(self.settings),
                )
            except ProviderUnavailable:
                if not self.started:  # provider_strict: a start on CPU is refused, not degraded
                    raise
                self._failed_to_load(
                    name, version, fingerprint, "its session landed on CPU (provider_strict)"
                )
                return None
            except Exception as e:  # a broken version must not stop the others: report it, go on
                self._failed_to_load(name, version, fingerprint, str(e))
                return None
            model.start()
            if self.settings.warmup:
                try:
                    await loop.run_in_executor(None, model.warm_up)
                except Exception as e:
                    await model.retire()
                    self._failed_to_load(name, version, fingerprint, f"the warm-up run failed: {e}")
                    return None
                except BaseException:  # cancelled (shutdown): a started model must not linger
                    await model.retire()
                    raise
            model.memory_bytes = max(0, await loop.run_in_executor(None, resident_bytes) - before)
        finally:
            self.loading[name].discard(version)
            if not self.loading[name]:
                del self.loading[name]
        self._fingerprints[(name, version)] = fingerprint
        self.put_in_service(model)
        return model

    def put_in_service(self, model: ServedModel) -> None:
        """Serve `model` from now on, beside its model's other versions (a version reloaded from
        new files replaces the old load of it, which is retired)."""
        series = self.served.setdefault(model.name, ServedVersions(model.name))
        old = series.add(model)
        self._changed(model.name)
        if self._failed.pop((model.name, model.version), None) is not None:
            self._report_failures(model.name)
        self.metrics.model_loads.labels(model.name, "loaded").inc()
        self.metrics.model_info.labels(*info_labels(model)).set(1)
        self.metrics.model_memory.labels(model.name, str(model.version)).set(model.memory_bytes)
        log.info("serving %s version %d", model.name, model.version)
        if old is not None:  # the same version reloaded: its memory series is the new load's now
            if info_labels(old) != info_labels(model):
                with contextlib.suppress(KeyError):
                    self.metrics.model_info.remove(*info_labels(old))
            self._retire_later(old)

    async def unload(self, name: str, version: int) -> bool:
        """Take a version out of service (new requests no longer get it) and retire it in the
        background. False when it was not loaded."""
        series = self.served.get(name)
        model = series.remove(version) if series is not None else None
        if model is None or series is None:
            return False
        if not series:
            del self.served[name]
        self._fingerprints.pop((name, version), None)
        self._changed(name)
        self.metrics.model_loads.labels(name, "unloaded").inc()
        log.info("unloading %s version %d", name, version)
        with contextlib.suppress(KeyError):  # its series go with it
            self.metrics.model_info.remove(*info_labels(model))
        with contextlib.suppress(KeyError):
            self.metrics.model_memory.remove(name, str(version))
        self._retire_later(model)
        return True

    def _retire_later(self, model: ServedModel) -> None:
        """Retire `model` in the background: the requests holding it finish on it (up to
        graceful_timeout_s) while the registry goes on."""
        task = asyncio.ensure_future(model.retire(self.settings.graceful_timeout_s))
        self._retiring.add(task)
        task.add_done_callback(self._retired)

    def _retired(self, task: asyncio.Task[None]) -> None:
        self._retiring.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("retiring a model failed: %s", task.exception())

    async def retired(self) -> None:
        """Wait until every model taken out of service so far is retired (its memory released)."""
        while self._retiring:
            await asyncio.gather(*list(self._retiring), return_exceptions=True)

    async def stop(self) -> None:
        """At shutdown (uvicorn has let the requests in flight finish): queued work is refused,
        running batches end and answer, the lanes end."""
        async with self.lock:
            for series in list(self.served.values()):
                for model in list(series.versions.values()):
                    await model.retire()
            self.served.clear()
            await self.retired()
        self.encode_pool.shutdown(wait=True)

    def _changed(self, name: str) -> None:
        self._names.clear()
        series = self.served.get(name)
        if series:
            self.metrics.default_version.labels(name).set(series.serving().version)
        else:
            with contextlib.suppress(KeyError):
                self.metrics.default_version.remove(name)
        self._report_failures(name)

    def _failed_to_load(self, name: str, version: int, fingerprint: Fingerprint | None, reason: str) -> None:
        self._failed[(name, version)] = (fingerprint, reason)
        self.metrics.model_loads.labels(name, "failed").inc()
        series = self.served.get(name)
        serving = f"; serving version {series.serving().version}" if series else ""
        log.error("not serving %s version %d: %s%s", name, version, reason, serving)
        self._report_failures(name)

    def _report_failures(self, name: str) -> None:
        """gan_model_load_failed: 1 while a model has a failed version and no version serves."""
        failed = any(key[0] == name for key in self._failed)
        self.metrics.model_failures.labels(name).set(1 if failed and name not in self.served else 0)

    # --- the operator's word (admin API) ----------------------------------------------------------

    async def hold(self, name: str, version: int) -> ServedModel:
        """Load a version (if it is not) and keep it loaded whatever the policy says, until unloaded."""
        async with self.lock:
            series = self.served.get(name)
            if series is None or version not in series.versions:
                await self._load_asked(name, version)
                series = self.served[name]
            self.held.setdefault(name, set()).add(version)
            return series.versions[version]

    async def drop(self, name: str, versions: list[int] | None) -> list[int]:
        """Unload versions (None: all of the model's) and keep them out until loaded again."""
        async with self.lock:
            series = self.served.get(name)
            loaded = sorted(series.versions) if series is not None else []
            chosen = loaded if versions is None else versions
            missing = [v for v in chosen if v not in loaded]
            if not loaded:
                raise UnknownModel(f"model {name!r} has no version loaded")
            if missing:
                raise UnknownModel(
                    f"model {name!r} has no version {', '.join(map(str, missing))} loaded; "
                    f"loaded: {', '.join(map(str, loaded))}"
                )
            for version in chosen:
                self.held.get(name, set()).discard(version)
                self.excluded.setdefault(name, set()).add(version)
            # A sync: what the policy now wants instead is loaded and warmed up before the
            # unloaded versions go (no gap), and they go even if nothing replaces them.
            await self._sync()
            for version in chosen:
                await self.unload(name, version)
            return chosen

    async def make_default(self, name: str, version: int | None) -> ServedModel:
        """Unpinned requests get `version` from now on (a rollback); None: the newest again."""
        async with self.lock:
            series = self.served.get(name)
            if version is not None and (series is None or version not in series.versions):
                await self._load_asked(name, version)
                series = self.served[name]
            if series is None:
                raise UnknownModel(f"unknown model {name!r}")
            series.default = version
            self._changed(name)
            log.info("%s: unpinned requests get version %d", name, series.serving().version)
            await self._sync()  # a version that was only the rollback's is released
            return self.served[name].serving()

    async def set_canary(self, name: str, version: int | None, share: float) -> Canary | None:
        """A share of unpinned requests (by seed) to `version`; None or share 0 ends the canary."""
        async with self.lock:
            series = self.served.get(name)
            if version is not None and share > 0 and (series is None or version not in series.versions):
                await self._load_asked(name, version)
                series = self.served[name]
            if series is None:
                raise UnknownModel(f"unknown model {name!r}")
            series.canary = Canary(version, share) if version is not None and share > 0 else None
            log.info("%s: canary %s", name, series.canary)
            await self._sync()  # a version that was only the canary is released
            return series.canary

    async def _load_asked(self, name: str, version: int) -> None:
        """Load a version the operator asked for (tried again even if it failed before). It stays
        while it is held, the default or the canary, or the policy wants it."""
        self.excluded.get(name, set()).discard(version)
        if self._failed.pop((name, version), None) is not None:
            self._report_failures(name)
        repo = self.settings.models_dir
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(None, fingerprint, repo, name, version)
        if found is None:
            published = await loop.run_in_executor(None, list_versions, repo, name)
            listed = ", ".join(map(str, published)) or "none"
            raise UnknownModel(
                f"model {name!r} has no version {version} in the repository; published: {listed}"
            )
        if await self._load(name, version, found) is None:
            failed = self._failed.get((name, version))
            reason = failed[1] if failed is not None else "unknown"
            raise ModelLoadFailed(f"model {name!r} version {version} failed to load: {reason}")
