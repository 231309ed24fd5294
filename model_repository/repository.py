"""The model repository on disk: `REPO/NAME/VERSION/{model.onnx, manifest.json, README.md, ...}`.

A version is immutable once published, and appears all at once: its files are written into a
hidden staging directory beside it, flushed to disk, and the directory is renamed into place
(rename is atomic on one filesystem). Readers list only directories whose names are versions, so
they never see a staging directory or half a model. Imports neither torch nor onnx.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model_repository.manifest import ManifestError, read_manifest

# \Z, not $: `$` also matches before a trailing newline ("digits\n" would pass).
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")
VERSION_PATTERN = re.compile(r"^[1-9][0-9]{0,8}\Z")
STAGING_PREFIX = ".staging-"
RETIRED_PREFIX = ".retired-"


class RepositoryError(ValueError):
    """A bad model name or version, or a version that cannot be published."""


def check_name(name: str) -> str:
    """Model names become directory names and URL parts: lowercase letters, digits, '.', '_', '-',
    starting with a letter or digit (so no '..', no '/', no hidden directories)."""
    if not NAME_PATTERN.match(name):
        raise RepositoryError(
            f"model name {name!r} is not allowed: use 1-64 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def list_models(repo: Path) -> list[str]:
    if not repo.is_dir():
        return []
    return sorted(p.name for p in repo.iterdir() if p.is_dir() and NAME_PATTERN.match(p.name))


def list_versions(repo: Path, name: str) -> list[int]:
    """Published versions of a model, oldest first (staging and retired directories are hidden)."""
    model_dir = repo / check_name(name)
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and VERSION_PATTERN.match(p.name))


def version_dir(repo: Path, name: str, version: int) -> Path:
    return repo / check_name(name) / str(version)


def read_version(repo: Path, name: str, version: int, verify_file: bool = True) -> dict[str, Any]:
    """A published version's manifest, validated, and checked to describe this very directory."""
    directory = version_dir(repo, name, version)
    manifest = read_manifest(directory, verify_file=verify_file)
    if manifest["name"] != name or manifest["version"] != version:
        raise ManifestError(
            f"{directory}: the manifest describes {manifest['name']} version {manifest['version']}"
        )
    return manifest


def _fsync_tree(directory: Path) -> None:
    """Flush every file and the directory itself: after the rename, a crash cannot leave a
    published version whose files are still empty on disk."""
    for path in directory.rglob("*"):
        if path.is_file():
            with path.open("rb") as f:
                os.fsync(f.fileno())
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_version(
    repo: Path,
    name: str,
    write: Callable[[Path, int], None],
    version: int | None = None,
    replace: bool = False,
) -> tuple[int, Path]:
    """Publish a new version of `name`: `write(staging_dir, version)` fills a hidden staging
    directory, which is then renamed to REPO/NAME/VERSION. version=None takes the next number.

    An existing version is never overwritten unless `replace` is set (meant for rebuilding a
    repository offline, e.g. `make models`): the old directory is renamed aside and the new one
    renamed in, so the directory always holds one complete version or, briefly, none; a reader
    that opens its files one by one across the swap gets a sha256 mismatch from read_manifest,
    not silently mixed files. On any error the staging directory is removed.
    """
    check_name(name)
    if version is not None and (isinstance(version, bool) or version < 1):
        raise RepositoryError(f"version must be a positive integer, got {version!r}")
    model_dir = repo / name
    if model_dir.exists() and not model_dir.is_dir():
        raise RepositoryError(f"{model_dir} exists and is not a directory")
    model_dir.mkdir(parents=True, exist_ok=True)
    existing = list_versions(repo, name)
    if version is None:
        version = existing[-1] + 1 if existing else 1
    elif version in existing and not replace:
        raise RepositoryError(
            f"{name} version {version} already exists in {repo}; versions are immutable "
            "(leave --version out for the next number, or pass --replace)"
        )
    target = model_dir / str(version)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{version}-", dir=model_dir))
    try:
        # mkdtemp makes the directory private (0700); a service running as another user (the
        # container's) must be able to read a published version.
        staging.chmod(0o755)
        write(staging, version)
        _fsync_tree(staging)
        if target.exists():
            if not replace:  # published by a concurrent export since we looked
                raise RepositoryError(f"{name} version {version} was published by another export meanwhile")
            retired = Path(tempfile.mkdtemp(prefix=f"{RETIRED_PREFIX}{version}-", dir=model_dir))
            os.rename(target, retired / "old")
            os.rename(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            try:
                os.rename(staging, target)
            except OSError as e:  # a concurrent export created it between the check and here
                raise RepositoryError(f"cannot publish {name} version {version}: {e}") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return version, target
