"""Every shell, console and python block of README.md, docs/*.md and bench/README.md, run as a reader
would run it (tests/docs/workspace.py; the markers and quick forms: docs/testing.md). One test per
block, named by its file and line: `docs/api.md:88`."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.docs.markdown import Block, documents, parse
from tests.docs.workspace import REPO, DocRun

BLOCKS = [
    block
    for path in documents(REPO)
    for block in parse(str(path.relative_to(REPO)), path.read_text())
    if block.kind
]


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_block(block: Block, doc_runs: Callable[[str], DocRun]) -> None:
    outcome = doc_runs(block.path).outcome(block)
    print(outcome.report)  # shown with -rA or on failure: what ran in place of what is written
    if outcome.status == "skipped":
        pytest.skip(reason=outcome.message)
    if outcome.status == "failed":
        pytest.fail(outcome.message, pytrace=False)
