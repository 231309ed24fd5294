"""Test inputs built once per test run and shared by every pytest-xdist worker: the first worker
to ask builds it under a lock into the run's shared temporary directory; the others wait for it
and read what it left (pickled), instead of spending the same minute of CPU again."""

from __future__ import annotations

import fcntl
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], T]) -> T:
    """build(directory) once per run; its value (picklable, read-only for tests) for every worker."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # basetemp is the worker's own: its parent is the run's
        root = root.parent
    directory, done = root / f"built-{name}", root / f"built-{name}.pickle"
    with open(root / f"built-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, even if build raises
        if done.exists():
            value: T = pickle.loads(done.read_bytes())
            return value
        # a build that failed (in this worker or another) left its own directory: never built into
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir()
        value = build(directory)
        partial = done.with_suffix(".partial")
        partial.write_bytes(pickle.dumps(value))
        partial.rename(done)  # whole or absent
        return value
