"""Shared test setup: a private cache for evaluation classifiers, small thread pools."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Real servers for the service and client tests (fixtures `server`, `make_server`).
pytest_plugins = ["tests.live_server"]


@pytest.fixture(autouse=True, scope="session")
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # Evaluation classifiers are cached per dataset; tests must neither read a user's cache nor
    # leave files in it. Subprocesses inherit the variable.
    cache = tmp_path_factory.mktemp("gan-cache")
    old = os.environ.get("GAN_CACHE_DIR")
    os.environ["GAN_CACHE_DIR"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("GAN_CACHE_DIR", None)
    else:
        os.environ["GAN_CACHE_DIR"] = old
