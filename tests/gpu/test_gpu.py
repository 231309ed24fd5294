"""On the GPU: every bundled model really runs on the CUDA provider, gives the CPU's pixels within
one level (fp32) and its fp16 graph within its export tolerance, warms up every batch bucket, and
reuses its bound buffers; CUDA graphs give the same pixels; the service serves on CUDA."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.served.providers import CPU, CUDA
from tests.bundled import BUNDLED, load, sample_rows
from tests.live_server import start_server

pytestmark = pytest.mark.gpu


def diff_levels(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


@pytest.mark.parametrize("name", BUNDLED)
def test_each_model_runs_on_cuda_and_gives_the_cpus_pixels(
    name: str, encode_pool: ThreadPoolExecutor
) -> None:
    gpu = load(name, encode_pool, provider="cuda", provider_strict=True, precision="fp32")
    cpu = load(name, encode_pool, provider="cpu", max_batch_tiles=4)
    assert gpu.runtime.provider == CUDA and not gpu.runtime.fallback
    assert gpu.info()["io_binding"] is True and gpu.info()["graph"] == "model.onnx"
    assert cpu.runtime.provider == CPU
    for units in (1, 3, 4):
        rows = sample_rows(gpu, units)
        assert diff_levels(gpu.run_batch(rows), cpu.run_batch(rows)) <= 1


@pytest.mark.parametrize("name", BUNDLED)
def test_the_fp16_graph_is_used_on_cuda_within_its_tolerance(
    name: str, encode_pool: ThreadPoolExecutor
) -> None:
    gpu = load(name, encode_pool, provider="cuda", provider_strict=True)  # precision auto
    variant = gpu.manifest.get("variants", {}).get("fp16")
    if variant is None:
        pytest.skip(reason=f"{name} has no fp16 graph (variants.fp16 in its manifest)")
    cpu = load(name, encode_pool, provider="cpu", max_batch_tiles=4)
    assert gpu.info()["graph_precision"] == "fp16" and gpu.info()["graph"] == variant["file"]["name"]
    # The export's tolerance is in the model's units ([-1, 1]: 127.5 levels each), plus rounding.
    levels = math.ceil(variant["parity"]["tolerance"] * 127.5) + 1
    for units in (1, 4):
        rows = sample_rows(gpu, units)
        assert diff_levels(gpu.run_batch(rows), cpu.run_batch(rows)) <= levels


@pytest.mark.parametrize("name", ["digits-conditional", "srresnet-x4"])
def test_every_bucket_warms_up_and_bound_buffers_are_reused(
    name: str, encode_pool: ThreadPoolExecutor
) -> None:
    model = load(name, encode_pool, provider="cuda", provider_strict=True)
    assert model.buckets.sizes[-1] == (256 if model.manifest_task == "generate" else 8)
    model.warm_up()
    session = model.runtime.bound["model"]
    warmed = sorted({b.inputs[next(iter(b.inputs))].shape()[0] for b in session.bound()})
    assert warmed == list(model.buckets.sizes)
    made = session.bindings_made
    rows = sample_rows(model, model.buckets.sizes[2])
    first = model.run_batch(rows)
    for _ in range(50):
        assert np.array_equal(model.run_batch(rows), first)
    assert session.bindings_made == made  # the warm-up's buffers served every batch


def test_cuda_graphs_give_the_same_pixels(encode_pool: ThreadPoolExecutor) -> None:
    plain = load("digits-conditional", encode_pool, provider="cuda", provider_strict=True, precision="fp32")
    graphs = load(
        "digits-conditional",
        encode_pool,
        provider="cuda",
        provider_strict=True,
        precision="fp32",
        cuda_graphs=True,
    )
    for units in (8, 8, 8, 3, 8):  # graphs are captured after a shape's first runs, then replayed
        rows = plain.warm_up_inputs(units)
        assert np.array_equal(graphs.run_batch(rows), plain.run_batch(rows))


def test_the_service_serves_on_cuda(tmp_path: Path) -> None:
    srv = start_server(tmp_path, provider="cuda", provider_strict="true")
    try:
        models = httpx.get(f"{srv.url}/v1/models", timeout=10).json()["models"]
        assert {m["provider"] for m in models} == {CUDA}
        assert httpx.get(f"{srv.url}/readyz", timeout=10).json()["warnings"] == []
        answer = httpx.post(f"{srv.url}/generate", json={"model": "digits", "n": 64, "seed": 3}, timeout=60)
        assert answer.status_code == 200, answer.text
        assert "inference on CUDA (GPU)" in srv.log()
    finally:
        srv.stop()
