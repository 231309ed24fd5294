"""Repository layout, names, version numbers, and atomic publishing."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from model_repository.repository import (
    RepositoryError,
    check_name,
    list_models,
    list_versions,
    publish_version,
)


def _writer(payload: bytes, pause: float = 0.0) -> Callable[[Path, int], None]:
    """A write callback that lays down model.onnx, pauses, then manifest.json (with the model's
    hash), the way export does: a reader that saw the directory early would find it incomplete."""

    def write(staging: Path, version: int) -> None:
        (staging / "model.onnx").write_bytes(payload)
        time.sleep(pause)
        manifest = {"version": version, "sha256": hashlib.sha256(payload).hexdigest()}
        (staging / "manifest.json").write_text(json.dumps(manifest))

    return write


def test_versions_count_up_and_are_immutable(tmp_path: Path) -> None:
    assert list_versions(tmp_path, "gen") == [] and list_models(tmp_path) == []
    assert publish_version(tmp_path, "gen", _writer(b"a"))[0] == 1
    assert publish_version(tmp_path, "gen", _writer(b"b"))[0] == 2
    assert publish_version(tmp_path, "gen", _writer(b"c"), version=10)[0] == 10
    assert publish_version(tmp_path, "gen", _writer(b"d"))[0] == 11
    assert list_versions(tmp_path, "gen") == [1, 2, 10, 11]
    assert list_models(tmp_path) == ["gen"]
    with pytest.raises(RepositoryError, match=r"gen version 2 already exists .* immutable"):
        publish_version(tmp_path, "gen", _writer(b"x"), version=2)
    assert (tmp_path / "gen" / "2" / "model.onnx").read_bytes() == b"b"
    # Published directories are readable by other users (a container's service user).
    assert (tmp_path / "gen" / "2").stat().st_mode & 0o777 == 0o755
    with pytest.raises(RepositoryError, match="positive integer"):
        publish_version(tmp_path, "gen", _writer(b"x"), version=0)


def test_replace_swaps_a_version_whole(tmp_path: Path) -> None:
    publish_version(tmp_path, "gen", _writer(b"old"), version=1)
    publish_version(tmp_path, "gen", _writer(b"new"), version=1, replace=True)
    assert (tmp_path / "gen" / "1" / "model.onnx").read_bytes() == b"new"
    assert sorted(p.name for p in (tmp_path / "gen").iterdir()) == ["1"]  # nothing left aside


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    def broken(staging: Path, version: int) -> None:
        (staging / "model.onnx").write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        publish_version(tmp_path, "gen", broken)
    assert list_versions(tmp_path, "gen") == []
    assert list((tmp_path / "gen").iterdir()) == []


@pytest.mark.parametrize("name", ["", "A", "../x", "a/b", ".hidden", "-x", "x" * 65, "a b", "é", "gen\n"])
def test_bad_names_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="is not allowed"):
        check_name(name)
    with pytest.raises(RepositoryError):
        publish_version(tmp_path, name, _writer(b"x"))
    assert not any(tmp_path.iterdir())


def test_good_names() -> None:
    for name in ("digits", "sr-x4", "srgan_x4.v2", "0abc"):
        assert check_name(name) == name


def test_a_concurrent_reader_never_sees_a_partial_version(tmp_path: Path) -> None:
    """One thread publishes versions whose files are written slowly; another lists and reads the
    repository as fast as it can. Every version it can see must be complete and consistent."""
    payloads = [os.urandom(200_000) for _ in range(6)]
    done = threading.Event()
    seen: set[int] = set()
    problems: list[str] = []

    def reader() -> None:
        while not done.is_set():
            for version in list_versions(tmp_path, "gen"):
                directory = tmp_path / "gen" / str(version)
                try:
                    manifest = json.loads((directory / "manifest.json").read_text())
                    data = (directory / "model.onnx").read_bytes()
                except (OSError, ValueError) as e:
                    problems.append(f"version {version}: {e}")
                    continue
                if hashlib.sha256(data).hexdigest() != manifest["sha256"] or manifest["version"] != version:
                    problems.append(f"version {version}: files do not match")
                seen.add(version)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for payload in payloads:
            publish_version(tmp_path, "gen", _writer(payload, pause=0.05))
        time.sleep(0.05)
    finally:
        done.set()
        thread.join()
    assert problems == []
    assert seen == set(range(1, 7))
    assert all(not p.name.startswith(".") for p in (tmp_path / "gen").iterdir())
