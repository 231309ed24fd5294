"""The generate job's pure parts: labels, the job record, the manifest after a crash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from client.generate_job import (
    GenerateJob,
    parse_labels,
    read_manifest,
    resolve_labels,
    settle_job,
    write_manifest,
)
from client.runner import JobError, Summary


def model(count: int, names: list[str]) -> dict[str, Any]:
    return {"name": "m", "generator": {"classes": {"count": count, "names": names}}}


def test_labels() -> None:
    assert parse_labels("0-3") == ["0", "1", "2", "3"]
    assert parse_labels("0-1, 7,cat") == ["0", "1", "7", "cat"]
    with pytest.raises(JobError, match="backwards"):
        parse_labels("5-2")
    with pytest.raises(JobError, match="empty"):
        parse_labels("1,,2")
    animals = model(3, ["cat", "dog", "owl"])
    assert resolve_labels(animals, ["owl", "0", "dog"]) == [2, 0, 1]
    assert resolve_labels(animals, None) == [0, 1, 2]  # every class in turn
    with pytest.raises(JobError, match=r"unknown label '3'; classes are 0-2 or cat, dog, owl"):
        resolve_labels(animals, ["3"])
    with pytest.raises(JobError, match="unconditional"):
        resolve_labels(model(0, []), ["1"])
    assert resolve_labels(model(0, []), None) is None


def test_items_and_names() -> None:
    job = GenerateJob(model="m", n=5, seed=10, labels=[4, 2])
    assert [job.item(i) for i in range(4)] == [(10, 4), (11, 2), (12, 4), (13, 2)]
    assert job.file_name(10, 4) == "4/seed10_label4.png"
    assert GenerateJob(model="m", n=1, seed=0, labels=None, format="jpeg").file_name(3, None) == "seed3.jpg"


def test_the_job_record(tmp_path: Path) -> None:
    job = GenerateJob(model="m", n=10, seed=99, labels=[0, 1])
    assert settle_job(tmp_path, job, seed_given=True) == job
    # No --seed on a re-run: the recorded seed is used; n may change.
    fresh = GenerateJob(model="m", n=20, seed=12345, labels=[0, 1])
    assert settle_job(tmp_path, fresh, seed_given=False).seed == 99
    with pytest.raises(JobError, match=r"holds another job.*labels"):
        settle_job(tmp_path, GenerateJob(model="m", n=10, seed=99, labels=[1]), seed_given=True)
    (tmp_path / "job.json").write_text("{not json")
    with pytest.raises(JobError, match="not valid JSON"):
        settle_job(tmp_path, job, seed_given=True)


def test_manifest_after_a_crash(tmp_path: Path) -> None:
    entries = {
        f"seed{s}.png": {"file": f"seed{s}.png", "seed": s, "label": None, "version": 1} for s in (3, 1, 2)
    }
    for name in entries:
        (tmp_path / name).write_bytes(b"png")
    write_manifest(tmp_path, entries)
    assert [json.loads(line)["seed"] for line in (tmp_path / "manifest.jsonl").read_text().splitlines()] == [
        1,
        2,
        3,
    ]
    # A line cut short by a kill, and an entry whose file is gone: both dropped.
    with (tmp_path / "manifest.jsonl").open("a") as f:
        f.write('{"file": "seed4.png", "seed": 4, "lab')
    (tmp_path / "seed2.png").unlink()
    assert sorted(read_manifest(tmp_path)) == ["seed1.png", "seed3.png"]


def test_summary_line() -> None:
    summary = Summary(done=90, skipped=10, failed=0, seconds=2.0)
    assert summary.line() == "done 90, skipped 10, failed 0 in 2.0 s (45.0 images/s)" and summary.ok
    assert not Summary(failed=1).ok and not Summary(aborted="down").ok
