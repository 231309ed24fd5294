"""The GPU tests (marker `gpu`): run by scripts/gpu/check.sh on a machine with an NVIDIA GPU and
onnxruntime-gpu; skipped elsewhere, each with the reason. Where a GPU and a CUDA provider are both
present, a model that lands on the CPU fails its test: that is the bug these tests are for."""

from __future__ import annotations

import glob
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import onnxruntime as ort
import pytest

from service.served.providers import CUDA, preload_cuda_libraries


def why_no_gpu() -> str:
    """'' when this machine has an NVIDIA GPU and ONNX Runtime a CUDA provider; else why not."""
    if not glob.glob("/dev/nvidia[0-9]*") and not shutil.which("nvidia-smi"):
        return "no NVIDIA GPU on this machine (no /dev/nvidia*, no nvidia-smi)"
    if CUDA not in ort.get_available_providers():
        return (
            f"onnxruntime {ort.__version__} here has no CUDA provider (it has "
            f"{', '.join(ort.get_available_providers())}): install onnxruntime-gpu "
            "(scripts/gpu/check.sh does)"
        )
    return ""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = why_no_gpu()
    for item in items:
        if item.get_closest_marker("gpu") and reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def cuda_libraries() -> None:
    if not why_no_gpu():
        preload_cuda_libraries()  # the nvidia-* pip packages' CUDA and cuDNN, where the system has none


@pytest.fixture(scope="session")
def encode_pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as pool:
        yield pool
