"""`python -m service.healthcheck`, the containers' HEALTHCHECK: 0 against a live service on
GAN_SERVE_PORT, 1 (with the reason on stderr) when nothing answers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

from tests.live_server import REPO, Server, free_port


def healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GAN_SERVE_PORT": str(port)}
    return subprocess.run(
        [sys.executable, "-m", "service.healthcheck"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_healthcheck(make_server: Callable[..., Server]) -> None:
    srv = make_server(["digits"])
    assert healthcheck(int(srv.url.rsplit(":", 1)[1])).returncode == 0
    down = healthcheck(free_port())
    assert down.returncode == 1 and "healthz" in down.stderr
