"""A real gan-serve process on a free loopback port, serving the bundled models: the fixtures
`server` (shared per module, default settings) and `make_server` (per test, settings given),
registered for the whole suite by tests/conftest.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench.loadgen import free_port, metric

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include `labels` (0 when absent)."""
        return metric(self.url, name, **labels)

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def model_subset(tmp_path: Path, names: list[str]) -> Path:
    """A repository holding only some bundled models (links): a server starts faster with fewer."""
    repo = tmp_path / ("models-" + "-".join(names))
    repo.mkdir(exist_ok=True)
    for name in names:
        if not (repo / name).exists():
            (repo / name).symlink_to(REPO / "models" / name, target_is_directory=True)
    return repo


def start_server(
    tmp_path: Path, models: Path = REPO / "models", *, degraded_ok: bool = False, **settings: object
) -> Server:
    """Start gan-serve and wait until it is ready (or, with degraded_ok, started with some models
    failed: /readyz answers 503 "degraded")."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GAN_SERVE_INTRA_OP_THREADS": "1"}
    env.update({f"GAN_SERVE_{k.upper()}": str(v) for k, v in settings.items()})
    log_path = tmp_path / f"server-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "--models", str(models), "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log_path)
    # With API keys (and guarded health checks), readiness is asked with the first key.
    key = str(settings.get("api_keys", "")).split(",")[0]
    headers = {"X-API-Key": key} if key else {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{server.log()}")
        try:
            ready = httpx.get(f"{server.url}/readyz", timeout=1, headers=headers)
            if ready.status_code == 200 or (degraded_ok and ready.json().get("status") == "degraded"):
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"the server did not become ready:\n{server.log()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One shared server with the default settings, for tests that do not change any."""
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
