"""A real gan-serve process on a free loopback port, serving the bundled models (bench.server's
ServerProcess: the one way tests and benchmarks start a server): the fixtures `server` (one for
the whole run, default settings) and `make_server` (per test, settings given), registered for the
whole suite by tests/conftest.py."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.server import ROOT as REPO
from bench.server import ServerProcess, free_port, model_subset

Server = ServerProcess

# One ONNX Runtime thread per run, as on the 2-core machines the suite is sized for.
TEST_ENV = {"OMP_NUM_THREADS": "1", "GAN_SERVE_INTRA_OP_THREADS": "1"}


def start_server(
    tmp_path: Path, models: Path = REPO / "models", *, degraded_ok: bool = False, **settings: object
) -> Server:
    """Start gan-serve and wait until it is ready (or, with degraded_ok, started with some models
    failed: /readyz answers 503 "degraded"). With API keys (and guarded health checks), readiness
    is asked with the first key."""
    key = str(settings.get("api_keys", "")).split(",")[0]
    handle, log_path = tempfile.mkstemp(prefix="server-", suffix=".log", dir=tmp_path)
    os.close(handle)
    return ServerProcess.start(
        Path(log_path),
        settings,
        models=models,
        env=TEST_ENV,
        headers={"X-API-Key": key} if key else None,
        degraded_ok=degraded_ok,
        timeout=120,
    )


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One shared server with the default settings, for the tests that change none: a server
    with every bundled model warmed up takes many seconds to start."""
    srv = start_server(tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def make(models: list[str] | None = None, **settings: object) -> Server:
        repo = REPO / "models" if models is None else model_subset(tmp_path, models)
        srv = start_server(tmp_path, repo, **settings)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


__all__ = ["REPO", "Server", "free_port", "make_server", "model_subset", "server", "start_server"]
