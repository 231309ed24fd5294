"""bench/gpu_bench.py on CPU (--provider cpu --quick), run as a subprocess against a real service and
real ONNX Runtime: a SIGTERM mid-run (a server half started, a load running) leaves a valid partial
JSON and no server behind. The whole quick run is checked where scripts/gpu/check.sh runs it
(tests/scripts/test_gpu_scripts.py, with tests/bench/gpu_report.py): one run serves both."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bench.gpu_plan import LOADS

ROOT = Path(__file__).resolve().parents[2]
CPU = "CPUExecutionProvider"


def bench(out: Path, *extra: str) -> subprocess.Popen[str]:
    """The rehearsal as the GPU machine runs it: from the source tree, PYTHONPATH at its root; in a
    session of its own, so that what it leaves running can be found."""
    return subprocess.Popen(
        [sys.executable, "bench/gpu_bench.py", "--provider", "cpu", "--quick", "--out", str(out), *extra],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def in_session(sid: int) -> list[int]:
    """The processes still in session `sid`."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[3]) == sid:
                pids.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return pids


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and value > 0


@pytest.mark.parametrize(
    ("after", "section"),
    [
        ("plain: starting", "plain: starting"),  # the server is being started: no ServerProcess yet
        ("plain generate n=1", "plain: generate n=64"),  # the second load is running
    ],
)
def test_a_sigterm_mid_run_leaves_a_valid_partial_json(tmp_path: Path, after: str, section: str) -> None:
    out = tmp_path / "gpu.json"
    process = bench(out, "--sections", "plain,service")
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def pump() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    try:
        while not seen or after not in seen[-1]:
            seen.append(lines.get(timeout=60))
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=90) == 128 + signal.SIGTERM, "".join(seen)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    report = json.loads(out.read_text())
    assert report["partial"] is True and report["interrupted"] == "SIGTERM"
    assert report["section"].startswith(section), report["section"]
    assert report["provider"] == "CPU" and report["finished_at"]
    assert report["service"]["loads"] == {}  # never reached
    if section.endswith("n=64"):
        first = report["plain"]["loads"][LOADS[0].name]
        assert positive(first["images_per_s"]) and first["errors"] == {}
    # Nothing of the run is left: the servers were stopped, the one half started too.
    deadline = time.monotonic() + 10
    while in_session(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert in_session(process.pid) == []
