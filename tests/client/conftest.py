"""A real gan-serve process with the two models the client jobs use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.live_server import Server, model_subset, start_server


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The conditional digits generator and the x2 upscaler: all the jobs need."""
    tmp = tmp_path_factory.mktemp("client-server")
    srv = start_server(tmp, model_subset(tmp, ["digits-conditional", "srresnet-x2"]))
    yield srv
    srv.stop()
