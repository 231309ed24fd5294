"""The documentation test's fixture: one DocRun per Markdown file for the whole session, each in a
directory of its own, its servers stopped at the end."""

from __future__ import annotations

import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.docs.workspace import DocRun


def installed_from() -> list[str]:
    """Where the environment running the suite has this project from: pip's direct_url.json (the
    checkout's own egg-info, on sys.path in a test, has none, so the site-packages are read)."""
    found = Path(sysconfig.get_paths()["purelib"]).glob("gan_serving-*.dist-info/direct_url.json")
    return sorted(path.read_text() for path in found)


@pytest.fixture(scope="session")
def doc_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], DocRun]]:
    runs: dict[str, DocRun] = {}
    before = installed_from()

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
    # A block that reinstalled the project (from its temporary copy) would leave the suite's
    # environment pointing at a directory that is gone: fail the run, loudly.
    assert installed_from() == before, f"a documentation block reinstalled gan-serving: {installed_from()}"
