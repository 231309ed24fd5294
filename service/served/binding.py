"""ONNX Runtime's IO binding: a session's inputs and output bound once per batch shape to buffers
that are kept and reused, so that a batch allocates nothing but the copy of its pixels it returns.

On CUDA the buffers live on the device (one host-to-device copy per input, one copy of the output
back), which also gives CUDA graphs their fixed addresses; on CPU a setting binds host buffers
(how it is tested without a GPU). A binding serves one run at a time, so a shape has as many as
lanes ran it at once; at most `MAX_SHAPES` shapes are kept, the least recently used going first.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import onnxruntime as ort

MAX_SHAPES = 40  # batch shapes kept bound: every bucket (service.served.buckets) of each graph
FeedKey = tuple[tuple[str, tuple[int, ...], str], ...]


class BoundShape:
    """One batch shape's binding: input buffers, the output buffer, and the binding that names them."""

    def __init__(
        self,
        session: ort.InferenceSession,
        feed: dict[str, np.ndarray],
        output: np.ndarray,
        device: str,
        graph_id: int | None,
    ) -> None:
        self.device = device
        self.binding = session.io_binding()
        self.inputs: dict[str, Any] = {}
        # The same calls on both devices: the CPU runs (tests, io_binding=on) exercise the CUDA code.
        for name, array in feed.items():
            value = ort.OrtValue.ortvalue_from_shape_and_type(array.shape, array.dtype.type, device, 0)
            self.binding.bind_ortvalue_input(name, value)
            self.inputs[name] = value
        self.output_name = session.get_outputs()[0].name
        self.output = ort.OrtValue.ortvalue_from_shape_and_type(output.shape, output.dtype.type, device, 0)
        self.binding.bind_ortvalue_output(self.output_name, self.output)
        self.run_options = ort.RunOptions()
        if graph_id is not None:  # one captured CUDA graph per binding (its fixed buffers)
            self.run_options.add_run_config_entry("gpu_graph_id", str(graph_id))
        self.runs = 0

    def run(self, session: ort.InferenceSession, feed: dict[str, np.ndarray]) -> np.ndarray:
        for name, array in feed.items():
            self.inputs[name].update_inplace(np.ascontiguousarray(array))  # into the kept buffer
        session.run_with_iobinding(self.binding, self.run_options)
        self.runs += 1
        # The buffer is the next batch's too: the caller gets a copy. From CUDA numpy() is that
        # copy (device to host); on CPU it is a view of the buffer, copied here.
        pixels = self.output.numpy()
        return pixels.copy() if self.device == "cpu" else pixels

    def addresses(self) -> list[int]:
        """The bound buffers' addresses (the same from run to run: nothing is reallocated)."""
        return [value.data_ptr() for value in (*self.inputs.values(), self.output)]


class BoundSession:
    """A session run through IO binding: kept `BoundShape`s per batch shape, each used by one run
    at a time (lanes run batches of one session at once), made when none is free."""

    def __init__(self, session: ort.InferenceSession, device: str, cuda_graphs: bool = False) -> None:
        self.session = session
        self.device = device  # "cpu" or "cuda"
        self.cuda_graphs = cuda_graphs
        self._free: OrderedDict[FeedKey, list[BoundShape]] = OrderedDict()  # least recently used first
        self._graph_ids = itertools.count(1)  # 0 would be ORT's default graph: ids name bindings
        self._lock = threading.Lock()
        self.bindings_made = 0  # every BoundShape made, for tests and the memory check
        # With CUDA graphs a run without a graph id of its own must not be captured (ONNX Runtime
        # would capture it under the default id, at buffers that are gone after the run): -1.
        self.uncaptured = ort.RunOptions()
        if cuda_graphs:
            self.uncaptured.add_run_config_entry("gpu_graph_id", "-1")

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """One batch of a kept shape (a bucket): through a binding of that shape."""
        key: FeedKey = tuple((name, a.shape, a.dtype.str) for name, a in feed.items())
        with self._lock:
            free = self._free.get(key)
            bound = free.pop() if free else None
            graph_id = None
            if bound is None:
                self.bindings_made += 1
                graph_id = next(self._graph_ids) if self.cuda_graphs else None
        if bound is None:
            # A new shape (or every binding of it busy on other lanes): one run without kept
            # buffers answers this batch and tells the output's shape and type (an upscaler's
            # depends on its tiles'); the binding made after it, with its graph id, serves the
            # next batches (its first run captures its graph, at its own buffers).
            output = self.run_unbound(feed)
            bound = BoundShape(self.session, feed, output, self.device, graph_id)
        else:
            output = bound.run(self.session, feed)
        with self._lock:
            self._free.setdefault(key, []).append(bound)
            self._free.move_to_end(key)
            while len(self._free) > MAX_SHAPES:
                self._free.popitem(last=False)
        return output

    def run_unbound(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        """A run that keeps nothing: a shape's first, or one of a size no bucket holds."""
        return np.asarray(self.session.run(None, feed, self.uncaptured)[0])

    def bound(self) -> list[BoundShape]:
        """The kept bindings not running now (tests look at their buffers)."""
        with self._lock:
            return [b for shapes in self._free.values() for b in shapes]
