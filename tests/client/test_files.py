"""Atomic writes, and the clean-up of what a killed writer leaves behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from client.files import atomic_write, remove_partial_files


def test_partial_files_of_killed_writers_are_removed_and_nothing_else(tmp_path: Path) -> None:
    atomic_write(tmp_path / "a" / "seed1.png", b"whole")
    # what atomic_write leaves when killed between creating its temporary file and the rename
    fd, left = tempfile.mkstemp(dir=tmp_path / "a", prefix=".seed2.png.", suffix=".part")
    os.close(fd)
    keep = [tmp_path / "a" / ".notes.part", tmp_path / "a" / "draft.part", tmp_path / "b.png"]
    for path in keep:
        path.write_bytes(b"user data")
    assert remove_partial_files(tmp_path) == 1
    assert not Path(left).exists()
    assert (tmp_path / "a" / "seed1.png").read_bytes() == b"whole"
    assert all(path.read_bytes() == b"user data" for path in keep)
    assert remove_partial_files(tmp_path / "missing") == 0
