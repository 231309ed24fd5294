"""A service asked for CUDA that ends up on the CPU says so: at ERROR in its log, in /readyz's
warnings and /v1/models; with provider_strict it refuses to start instead. Both ways are real here:
the CPU build of onnxruntime has no CUDA provider, and onnxruntime-gpu on a machine without CUDA's
libraries has one that cannot load (the GPU image's old bug: a CUDA 12 image under a CUDA 13 build)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from model_repository.manifest import MANIFEST_FILE
from tests.live_server import REPO, TEST_ENV, Server, model_subset, start_server

# The gpu extra's pin, as docker/gpu-stack.json records it (tests/docker/test_gpu_stack.py keeps
# the two together).
PIN = json.loads((REPO / "docker" / "gpu-stack.json").read_text())["version"]
WHEELS = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gan-serving" / "wheels"


def serve(models: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """gan-serve that is expected to stop by itself: its exit status and output."""
    return subprocess.run(
        [sys.executable, "-m", "service", "--models", str(models), "--port", "0"],
        cwd=REPO,
        env={**os.environ, **TEST_ENV, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = model_subset(tmp_path_factory.mktemp("repo"), ["digits"])
    assert (repo / "digits" / "1" / MANIFEST_FILE).exists()
    return repo


@pytest.fixture(scope="module")
def gpu_build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """onnxruntime-gpu at the pinned version, for this interpreter, installed into a folder of its
    own (first on PYTHONPATH it shadows the CPU build). The wheel (about 250 MB) is kept in the
    user's cache between runs."""
    if glob.glob("/dev/nvidia[0-9]*"):
        pytest.skip(reason="this machine has an NVIDIA GPU: onnxruntime-gpu's CUDA provider may load here")
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    found = sorted(WHEELS.glob(f"onnxruntime_gpu-{PIN}-{tag}-*x86_64.whl"))
    if not found:
        # Into a scratch folder first, then renamed into the cache: a download cut short leaves
        # no partial wheel behind for the next run to find.
        scratch = tmp_path_factory.mktemp("download")
        download = ["download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(scratch)]
        try:
            fetched = subprocess.run(
                [sys.executable, "-m", "pip", *download, f"onnxruntime-gpu=={PIN}"],
                capture_output=True,
                text=True,
                timeout=240,  # with the install, well within pytest-timeout's 600 s
            )
        except subprocess.TimeoutExpired:
            pytest.skip(reason=f"onnxruntime-gpu {PIN} could not be downloaded within 240 s")
        got = sorted(scratch.glob(f"onnxruntime_gpu-{PIN}-{tag}-*x86_64.whl"))
        if not got:
            why = f"onnxruntime-gpu {PIN} for {tag} could not be had: {fetched.stderr.strip()[-300:]}"
            pytest.skip(reason=why)
        WHEELS.mkdir(parents=True, exist_ok=True)
        found = [shutil.move(got[0], WHEELS / got[0].name)]
    target = tmp_path_factory.mktemp("onnxruntime-gpu")
    install = ["install", "-q", "--no-deps", "--no-compile", "--target", str(target), str(found[0])]
    subprocess.run([sys.executable, "-m", "pip", *install], check=True, timeout=120)
    yield target


def test_cuda_asked_for_without_a_cuda_provider_is_said_loudly(digits: Path, tmp_path: Path) -> None:
    srv: Server = start_server(tmp_path, digits, provider="cuda")
    try:
        ready = httpx.get(f"{srv.url}/readyz", timeout=10).json()
        (warning,) = ready["warnings"]
        assert "CUDA was asked for but this ONNX Runtime" in warning and "has no CUDA provider" in warning
        (model,) = httpx.get(f"{srv.url}/v1/models", timeout=10).json()["models"]
        assert (
            model["provider"] == "CPUExecutionProvider"
            and "has no CUDA provider" in model["provider_fallback"]
        )
        first = next(line for line in srv.log().splitlines() if "gan.registry" in line)
        assert " ERROR gan.registry inference on CPU with onnxruntime" in first
    finally:
        srv.stop()


def test_strict_cuda_without_a_cuda_provider_refuses_to_start(digits: Path) -> None:
    done = serve(digits, {"GAN_SERVE_PROVIDER": "cuda", "GAN_SERVE_PROVIDER_STRICT": "true"})
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()  # one line, before any model loads
    assert line.startswith("gan-serve: error: CUDA was asked for (provider=cuda, provider_strict) but")


def test_a_cuda_provider_that_cannot_load_is_said_loudly(
    digits: Path, gpu_build: Path, tmp_path: Path
) -> None:
    """onnxruntime-gpu lists CUDA, but its provider library finds no libcudart.so.13 here: ONNX
    Runtime gives the session the CPU. Before, the service served on CPU and said nothing."""
    env = {"PYTHONPATH": f"{gpu_build}{os.pathsep}{REPO}"}
    srv = Server.start(tmp_path / "server.log", {}, models=digits, env={**TEST_ENV, **env}, timeout=120)
    try:
        ready = httpx.get(f"{srv.url}/readyz", timeout=10).json()
        assert ready["status"] == "ready"
        (warning,) = ready["warnings"]
        assert warning.startswith("digits: ONNX Runtime has a CUDA provider but gave this model the CPU")
        (model,) = httpx.get(f"{srv.url}/v1/models", timeout=10).json()["models"]
        assert model["provider"] == "CPUExecutionProvider"
        # Opened again for the CPU: model.onnx (not the fp16 graph a GPU would run), no IO
        # binding, single-threaded lanes pinned one per core.
        assert (model["graph"], model["graph_precision"], model["io_binding"]) == (
            "model.onnx",
            "fp32",
            False,
        )
        assert model["pinned_cores"] or len(os.sched_getaffinity(0)) == 1
        assert srv.log().count("gave this model the CPU") == 1  # said once, not per reopening
        assert "ERROR gan.runtime" in srv.log() and "the CUDA provider could not be used" in srv.log()
        # ...and it still serves (on CPU).
        assert (
            httpx.post(f"{srv.url}/generate", json={"model": "digits", "seed": 1}, timeout=30).status_code
            == 200
        )
    finally:
        srv.stop()


def test_strict_cuda_whose_provider_cannot_load_refuses_to_start(digits: Path, gpu_build: Path) -> None:
    env = {
        "PYTHONPATH": f"{gpu_build}{os.pathsep}{REPO}",
        "GAN_SERVE_PROVIDER": "cuda",
        "GAN_SERVE_PROVIDER_STRICT": "1",
    }
    done = serve(digits, env)
    assert done.returncode != 0
    assert "gave this model the CPU" in done.stderr and "provider_strict" not in done.stdout
