"""The GPU path's code run on CPU with real ONNX Runtime and the bundled models: IO binding (the
same bytes as plain runs, buffers reused, no growth over a thousand batches), batch buckets
(padded batches give the unpadded rows' pixels), and which graph and provider a version runs on."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from service.config import Settings, parse_buckets
from service.served.binding import BoundSession
from service.served.buckets import BatchBuckets
from service.served.model import ServedModel
from service.served.providers import CPU
from tests.bundled import BUNDLED, load, sample_rows


def resident_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def served(name: str, **settings: Any) -> ServedModel:
    return load(name, ThreadPoolExecutor(1), provider="cpu", concurrent_batches=1, **settings)


@pytest.mark.parametrize("name", BUNDLED)
def test_io_binding_gives_the_bytes_of_plain_runs(name: str) -> None:
    plain = served(name, io_binding="off", max_batch_tiles=2)
    bound = served(name, io_binding="on", max_batch_tiles=2)
    assert not plain.runtime.bound and bound.runtime.bound
    assert bound.info()["io_binding"] is True
    for units in (1, 2, 1):  # a new shape, another, then the first again through its kept buffers
        rows = sample_rows(plain, units)
        assert np.array_equal(plain.run_batch(rows), bound.run_batch(rows))
    # Two shapes of the main graph (and a style generator's mapping graph) are bound, once each.
    assert bound.runtime.bound["model"].bindings_made == 2


def test_bound_buffers_are_reused_and_a_thousand_batches_do_not_grow_memory() -> None:
    model = served("digits-conditional", io_binding="on", max_batch_size=8)
    session = model.runtime.bound["model"]
    rows = model.warm_up_inputs(8)
    first = model.run_batch(rows)
    for _ in range(100):  # the arena and the binding settle
        model.run_batch(rows)
    (shape,) = session.bound()
    addresses = shape.addresses()
    before = resident_kib()
    for _ in range(1000):
        out = model.run_batch(rows)
    grown_kib = resident_kib() - before
    assert np.array_equal(out, first)
    assert session.bindings_made == 1 and shape.runs == 1100 and shape.addresses() == addresses
    assert grown_kib < 4096, f"resident memory grew by {grown_kib} KiB over 1,000 bound batches"


def test_lanes_running_one_shape_at_once_each_get_a_binding() -> None:
    model = served("digits", io_binding="on", max_batch_size=4)
    session = model.runtime.bound["model"]
    rows = model.warm_up_inputs(4)
    with ThreadPoolExecutor(3) as lanes:
        outs = list(lanes.map(model.run_batch, [rows] * 30))
    assert all(np.array_equal(outs[0], out) for out in outs)
    assert 1 <= session.bindings_made <= 3  # never more than ran at once


def test_buckets_by_provider_and_setting() -> None:
    assert BatchBuckets.plan("", on_gpu=False, largest=5).sizes == (1, 2, 3, 4, 5)  # CPU: no padding
    assert BatchBuckets.plan("", on_gpu=True, largest=256).sizes == (1, 2, 4, 8, 16, 32, 64, 128, 256)
    assert BatchBuckets.plan("", on_gpu=True, largest=48).sizes == (1, 2, 4, 8, 16, 32, 48)
    assert BatchBuckets.plan("4, 16,1", on_gpu=False, largest=8).sizes == (1, 4, 8)  # the largest always
    buckets = BatchBuckets((1, 4, 8))
    assert buckets.fit(3) == 4 and buckets.fit(8) == 8
    x = {"x": np.arange(3)}
    padded, rows, bucketed = buckets.pad(x, frozenset({"x"}))
    assert rows == 3 and bucketed and padded["x"].tolist() == [0, 1, 2, 2]  # the last row repeated
    over = {"x": np.arange(11), "fixed": np.ones((1, 2))}
    assert buckets.pad(over, frozenset({"x"})) == (over, 11, False)  # over the top: at its own size
    assert buckets.pad(over, frozenset()) == (over, None, False)  # nothing batched: nothing to cut
    with pytest.raises(ValueError, match="different row counts"):
        buckets.pad({"x": np.arange(3), "y": np.arange(2)}, frozenset({"x", "y"}))
    for bad in ("0,4", "4,x", "1;2"):
        with pytest.raises(ValueError, match="batch_buckets"):
            parse_buckets(bad)
    with pytest.raises(ValueError, match="batch_buckets"):
        Settings(batch_buckets="two")


@pytest.mark.parametrize("name", ["digits-conditional", "digits-style", "srresnet-x2"])
def test_a_padded_batch_gives_the_pixels_of_its_rows(name: str) -> None:
    plain = served(name, max_batch_size=8, max_batch_tiles=8)
    padded = served(name, max_batch_size=8, max_batch_tiles=8, batch_buckets="1,4")
    assert padded.buckets.sizes == (1, 4, 8)
    assert padded.info()["batch_buckets"] == [1, 4, 8]
    for units in (3, 5):  # padded to 4 and to 8
        rows = sample_rows(plain, units)
        out = padded.run_batch(rows)
        assert out.shape[0] == units and np.array_equal(out, plain.run_batch(rows))


def test_the_warm_up_runs_every_bucket_once() -> None:
    model = served("digits", io_binding="on", max_batch_size=16, batch_buckets="1,2,4,8")
    model.warm_up()
    shapes = sorted(b.inputs["z"].shape()[0] for b in model.runtime.bound["model"].bound())
    assert shapes == [1, 2, 4, 8, 16]


def test_a_version_runs_its_model_onnx_at_its_precision_on_cpu() -> None:
    model = served("digits")
    info = model.info()
    assert info["provider"] == CPU and info["graph"] == "model.onnx" and info["graph_precision"] == "fp32"
    assert "provider_fallback" not in info


def test_a_graph_fed_more_rows_than_a_batch_runs_them_all() -> None:
    """A style generator's walk maps two latents per image: its mapping graph gets up to twice
    the batch's rows (a loop walk of 24 frames failed here once, 48 rows over the 32 bucket)."""
    model = served("digits-style")
    assert model.buckets.largest == 32
    session = model.runtime.sessions["mapping"]
    feed = {
        i.name: np.zeros((48, *i.shape[1:]), np.float32 if "float" in i.type else np.int64)
        for i in session.get_inputs()
    }
    assert model.runtime.run(feed, "mapping").shape[0] == 48


def test_with_cuda_graphs_each_kept_shape_has_its_graph_and_other_runs_none() -> None:
    """The run options a CUDA session gets (checked on a CPU session, which ignores them): a graph
    id per kept binding, captured at its own buffers; every other run marked not to be captured
    (ONNX Runtime would otherwise capture it under the default id, at buffers freed after it)."""
    model = served("digits", max_batch_size=4)
    session = BoundSession(model.runtime.sessions["model"], "cpu", cuda_graphs=True)
    assert session.uncaptured.get_run_config_entry("gpu_graph_id") == "-1"
    rng = np.random.default_rng(3)
    for units in (4, 4, 2, 4):
        feed = {"z": rng.standard_normal((units, 64)).astype(np.float32)}
        assert np.array_equal(session.run(feed), model.runtime.sessions["model"].run(None, feed)[0])
    ids = sorted(b.run_options.get_run_config_entry("gpu_graph_id") for b in session.bound())
    assert ids == ["1", "2"]  # one per shape, none for the shapes' first (unbound) runs
