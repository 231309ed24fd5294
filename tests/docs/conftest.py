"""The documentation test's fixture: one DocRun per Markdown file for the whole session, each in a
directory of its own, its servers stopped at the end."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.docs.workspace import DocRun


@pytest.fixture(scope="session")
def doc_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], DocRun]]:
    runs: dict[str, DocRun] = {}

    def shared_port() -> int:
        # the suite's shared server (tests/live_server.py): the bundled models, default settings
        return int(request.getfixturevalue("server").port)

    def run_of(path: str) -> DocRun:
        if path not in runs:
            base = tmp_path_factory.mktemp("doc-" + path.replace("/", "-"))
            runs[path] = DocRun(path, base, shared_port)
        return runs[path]

    yield run_of
    for run in runs.values():
        run.close()
