"""Class labels on the command line: an index is ASCII digits only. str.isdigit() also takes
characters such as '²' (which int() refuses: the CLI stopped with "invalid literal for int()")
or '٣' (which int() reads as 3): those are class names. No server: the request is intercepted."""

from __future__ import annotations

from typing import Any

import pytest

from client import cli
from client.blocking import GanClient
from client.errors import GanClientError
from client.generate_job import class_index, parse_labels, resolve_labels
from client.runner import JobError

NOT_INDICES = ["²", "³", "¹0", "٣", "３", "⑦", "-1", "1.5", "", " 1"]


def test_class_index() -> None:
    assert [class_index(s) for s in ("0", "7", "12", "007")] == [0, 7, 12, 7]
    for text in NOT_INDICES:
        assert class_index(text) is None, text


def test_labels_that_are_not_indices_are_names() -> None:
    assert parse_labels("²") == ["²"]
    assert parse_labels("²-3,0-2,٣-٥") == ["²-3", "0", "1", "2", "٣-٥"]
    superscripts = {"name": "m", "generator": {"classes": {"count": 3, "names": ["x", "²", "٣"]}}}
    assert resolve_labels(superscripts, ["٣", "²", "2", "x"]) == [2, 1, 2, 0]
    digits = {"name": "digits", "generator": {"classes": {"count": 10, "names": [str(k) for k in range(10)]}}}
    with pytest.raises(JobError, match=r"unknown label '²'; classes are 0-9"):
        resolve_labels(digits, ["²"])


@pytest.mark.parametrize(
    ("given", "sent"), [("3", 3), ("²", "²"), ("٣", "٣"), ("³2", "³2"), ("seven", "seven")]
)
def test_walk_sends_an_index_or_a_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], given: str, sent: int | str
) -> None:
    labels: list[object] = []

    def walk(self: GanClient, *args: Any, **options: Any) -> None:
        labels.append(options["label"])
        raise GanClientError("intercepted")

    monkeypatch.setattr(GanClient, "walk", walk)
    argv = ["walk", "--from-seed", "1", "--to-seed", "2", "--label", given, "--out", "unused"]
    assert cli.main([*argv, "--url", "http://127.0.0.1:9"]) == 1
    assert labels == [sent]
    assert capsys.readouterr().err == "gan-client: intercepted\n"
