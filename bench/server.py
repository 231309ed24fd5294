"""The one way benchmarks and tests start a server: a real process on a free loopback port, waited
for until it is ready, stopped with SIGTERM (as a supervisor would), its log kept in a file."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.loadgen import metric

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def model_subset(directory: Path, names: Sequence[str]) -> Path:
    """A repository holding only some of the bundled models (links): a server starts faster with
    fewer. Made once per directory and set of names."""
    repo = directory / ("models-" + "-".join(names))
    repo.mkdir(parents=True, exist_ok=True)
    for name in names:
        if not (repo / name).exists():
            (repo / name).symlink_to(ROOT / "models" / name, target_is_directory=True)
    return repo


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @classmethod
    def start(
        cls,
        log_path: Path,
        settings: Mapping[str, object] | None = None,
        *,
        models: Path = ROOT / "models",
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        ready_path: str = "/readyz",
        headers: Mapping[str, str] | None = None,
        degraded_ok: bool = False,
        timeout: float = 180,
        cwd: Path = ROOT,
    ) -> ServerProcess:
        """gan-serve on `models` with GAN_SERVE_* `settings` (or another server's `command`, given
        the port as --port), once `ready_path` answers 200 (with degraded_ok, also once gan-serve
        started with some models failed: /readyz says "degraded"). `cwd`: the checkout whose
        service runs (another one's, to compare two versions)."""
        port = free_port()
        argv = [*(command or [sys.executable, "-m", "service", "--models", str(models)]), "--port", str(port)]
        environment = {**os.environ, **(env or {})}
        environment.update({f"GAN_SERVE_{k.upper()}": str(v) for k, v in (settings or {}).items()})
        with log_path.open("wb") as log:
            process = subprocess.Popen(argv, cwd=cwd, env=environment, stdout=log, stderr=subprocess.STDOUT)
        server = cls(process, f"http://127.0.0.1:{port}", log_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{argv[:3]} exited with {process.returncode}:\n{server.log()}")
            with contextlib.suppress(httpx.TransportError, ValueError):
                ready = httpx.get(f"{server.url}{ready_path}", timeout=1, headers=dict(headers or {}))
                if ready.status_code == 200 or (degraded_ok and ready.json().get("status") == "degraded"):
                    return server
            time.sleep(0.1)
        server.stop()
        raise RuntimeError(f"{argv[:3]} did not become ready in {timeout:.0f} s:\n{server.log()}")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include `labels` (0 when absent)."""
        return metric(self.url, name, **labels)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then SIGKILL after `timeout` seconds; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
