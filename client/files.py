"""Output files written so that a crash never leaves a partial one, and image types told from
their first bytes."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from contract.media import sniff_format as format_of_bytes  # the server's own table (stdlib only)

EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "npy": ".npy"}


def sniff_format(path: Path) -> str | None:
    """'png', 'jpeg' or 'webp' from a file's first bytes; None for anything else."""
    with path.open("rb") as f:
        return format_of_bytes(f.read(16))


# atomic_write's temporary files: "." + the target's name + "." + mkstemp's 8 characters + ".part".
PARTIAL = re.compile(r"^\..+\.[a-z0-9_]{8}\.part\Z")


def remove_partial_files(folder: Path) -> int:
    """Delete the temporary files that writers killed mid-write (kill -9, a power cut) left under
    `folder`; nothing else matches their names. Returns how many were removed."""
    removed = 0
    if folder.is_dir():
        for path in folder.rglob(".*.part"):
            if path.is_file() and PARTIAL.match(path.name):
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename it into place: a
    reader (or a resumed job) sees the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
