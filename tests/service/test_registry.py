"""The registry and its served models on their own (no HTTP): a model is created, started, warmed
up, put in service and retired by itself, while the others serve."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from contract.errors import InvalidRequest, NotReady, UnknownModel
from model_repository.manifest import dump_manifest
from service.config import Settings
from service.lifecycle.registry import ModelRegistry
from service.metrics import ServiceMetrics
from service.schemas.requests import GenerateRequest
from service.served.batcher import CancelToken
from service.served.generator import Generator
from service.served.upscaler import Upscaler
from tests.live_server import REPO

FAR = 3600.0


def repository(tmp_path: Path, names: list[str]) -> Path:
    repo = tmp_path / "models"
    for name in names:
        shutil.copytree(REPO / "models" / name / "1", repo / name / "1")
    return repo


def second_version(repo: Path, name: str) -> None:
    """Version 2 of `name`: the same model file, its manifest saying version 2."""
    shutil.copytree(repo / name / "1", repo / name / "2")
    manifest = json.loads((repo / name / "2" / "manifest.json").read_text())
    manifest["version"] = 2
    (repo / name / "2" / "manifest.json").write_text(dump_manifest(manifest))


def request(**fields: object) -> GenerateRequest:
    return GenerateRequest.model_validate(fields)


def test_a_model_is_replaced_while_serving_and_the_old_one_retired(tmp_path: Path) -> None:
    repo = repository(tmp_path, ["digits", "srresnet-x2"])
    settings = Settings(models_dir=repo, max_batch_tiles=2, concurrent_batches=1)
    metrics = ServiceMetrics()

    async def scenario() -> None:
        registry = ModelRegistry(settings, metrics)
        with pytest.raises(NotReady):
            registry.resolve(None, Generator)
        await registry.start()
        try:
            assert registry.readiness()[0]
            old = registry.resolve("digits", Generator)
            assert old.version == 1 and registry.names(Generator) == ["digits"]
            with pytest.raises(InvalidRequest, match="is a generate model"):
                registry.resolve("digits", Upscaler)
            with pytest.raises(UnknownModel, match="unknown model 'nope'"):
                registry.resolve("nope", Generator)
            before = await old.generate(request(seed=5, n=3), "npy", time.monotonic() + FAR, CancelToken())

            # A request in flight on version 1 when version 2 is put in service finishes on version 1.
            in_flight = asyncio.ensure_future(
                old.generate(request(seed=5, n=64), "png", time.monotonic() + FAR, CancelToken())
            )
            await asyncio.sleep(0)
            second_version(repo, "digits")
            await registry.sync()  # the policy (latest:1) serves 2 and takes 1 out of service
            new = registry.resolve("digits", Generator)
            assert new.version == 2 and list(registry.served["digits"].versions) == [2]
            assert len((await in_flight).images) == 64
            await registry.retired()
            assert not any(thread.is_alive() for thread in old.lanes._threads)  # retired: lanes ended
            with pytest.raises(NotReady, match="out of service"):  # and its queue refuses work
                await old.generate(request(seed=1), "png", time.monotonic() + FAR, CancelToken())

            after = await new.generate(request(seed=5, n=3), "npy", time.monotonic() + FAR, CancelToken())
            assert after.version == 2
            assert [i.data for i in after.images] == [i.data for i in before.images]  # the same weights
            assert registry.resolve("srresnet-x2", Upscaler).version == 1  # the other served throughout
            assert new.info()["memory_bytes"] >= 0 and new.info()["version"] == 2
        finally:
            await registry.stop()

    asyncio.run(scenario())
    rendered = metrics.render().decode().splitlines()
    # The retired version's gauges are gone (its counters stay: they are totals).
    info = [line for line in rendered if line.startswith("gan_model_info{") and 'model="digits"' in line]
    memory = [
        line for line in rendered if line.startswith("gan_model_memory_bytes{") and 'model="digits"' in line
    ]
    assert len(info) == 1 and 'version="2"' in info[0] and info[0].endswith(" 1.0")
    assert len(memory) == 1 and 'version="2"' in memory[0]


def test_a_version_that_fails_to_load_leaves_the_served_one_serving(tmp_path: Path) -> None:
    repo = repository(tmp_path, ["digits"])
    settings = Settings(models_dir=repo, concurrent_batches=1)

    async def scenario() -> None:
        registry = ModelRegistry(settings, ServiceMetrics())
        await registry.start()
        try:
            second_version(repo, "digits")
            model_file = repo / "digits" / "2" / "model.onnx"
            model_file.write_bytes(bytes(model_file.stat().st_size))  # the same size, another sha256
            assert await registry.load("digits", 2) is None
            assert "sha256 does not match" in registry.failures["digits"]
            served = registry.resolve("digits", Generator)
            assert served.version == 1
            answer = await served.generate(request(seed=1), "png", time.monotonic() + FAR, CancelToken())
            # Still ready (the old version serves); the failure is reported, and not tried again
            # at every sync while the files stay the same.
            ready, body = registry.readiness()
            assert answer.version == 1 and ready and "sha256 does not match" in body["failed"]["digits"]
            await registry.sync()
            assert registry.resolve("digits", Generator).version == 1
            assert registry.metrics.model_loads.labels("digits", "failed")._value.get() == 1
        finally:
            await registry.stop()

    asyncio.run(scenario())


def test_the_one_function_that_builds_a_generators_batch_inputs() -> None:
    rows = Generator.batch_inputs(np.array([3, 4]), np.array([1, -1]), 0.7)
    assert rows["truncation"].tolist() == [0.7, 0.7] and rows["to_seed"].tolist() == [-1, -1]
    assert rows["t"].tolist() == [0.0, 0.0] and rows["lerp"].tolist() == [False, False]
    walk = Generator.batch_inputs(
        np.array([3, 3]), np.array([2, 2]), None, np.array([9, 9]), np.array([0.0, 1.0]), True
    )
    assert np.isnan(walk["truncation"]).all() and walk["lerp"].tolist() == [True, True]
    assert set(rows) == set(walk)  # any requests' rows share a batch


def test_a_retired_model_releases_its_session_even_with_the_collector_frozen(tmp_path: Path) -> None:
    """The service freezes the garbage collector after start-up (gc.freeze), and a served model
    is a reference cycle: retiring it must free its ONNX Runtime session itself. Reloading the
    served version keeps its metric series."""
    import gc
    import weakref

    repo = repository(tmp_path, ["digits"])
    metrics = ServiceMetrics()

    async def scenario() -> None:
        registry = ModelRegistry(Settings(models_dir=repo, concurrent_batches=1), metrics)
        await registry.start()
        gc.collect()
        gc.freeze()
        try:
            old = registry.resolve("digits", Generator)
            session = weakref.ref(old.runtime.sessions["model"])
            again = await registry.load("digits", 1)  # the same version, e.g. after --replace
            assert again is not None and again is not old
            await registry.retired()
            assert session() is None  # released at once, not left to the (frozen) collector
            with pytest.raises(NotReady, match="out of service"):
                await old.generate(request(seed=1), "png", time.monotonic() + FAR, CancelToken())
        finally:
            gc.unfreeze()
            await registry.stop()

    asyncio.run(scenario())
    rendered = metrics.render().decode().splitlines()
    assert any(line.startswith("gan_model_info{") and 'version="1"' in line for line in rendered)
    assert any(line.startswith("gan_model_memory_bytes{") and 'version="1"' in line for line in rendered)
