"""Each version's interface for GET /v1/models (`versions.NAME.interfaces`), so that a client can
see whether version 2 of a model takes and draws what version 1 did.

The fields are model_repository.interface's, the ones gan-export compares before it publishes. A
loaded version shows its served manifest's; a version published but not loaded (the version
policy keeps only the newest by default) shows its manifest's on disk, read once per change of
its files (the registry's fingerprints), so listing the models reads nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

from model_repository.interface import interface
from model_repository.manifest import ManifestError
from model_repository.repository import read_version
from service.served.model import ServedModel

log = logging.getLogger("gan.registry")


class VersionInterfaces:
    """The interfaces of the published versions, as the registry's last scan of the repository saw
    them."""

    def __init__(self) -> None:
        # (name, version) -> (the fingerprint of the manifest read, its interface or None: unreadable)
        self._read: dict[tuple[str, int], tuple[Hashable, dict[str, Any] | None]] = {}

    def refresh(self, repo: Path, published: Mapping[str, Mapping[int, Hashable]]) -> None:
        """Blocking (off the event loop): read the manifests of versions new or republished since
        the last call (`published`: the registry's scan, name -> version -> fingerprint); forget
        versions gone."""
        fresh: dict[tuple[str, int], tuple[Hashable, dict[str, Any] | None]] = {}
        for name, versions in published.items():
            for version, fingerprint in versions.items():
                known = self._read.get((name, version))
                if known is None or known[0] != fingerprint:
                    known = (fingerprint, self._interface(repo, name, version))
                fresh[(name, version)] = known
        self._read = fresh

    @staticmethod
    def _interface(repo: Path, name: str, version: int) -> dict[str, Any] | None:
        # Only the manifest: its model file's checksum is checked when the version is loaded, and
        # a version that fails that is reported among the failures.
        try:
            return interface(read_version(repo, name, version, verify_file=False))
        except (ManifestError, OSError) as e:
            log.debug("no interface for %s version %d: %s", name, version, e)
            return None

    def of(self, name: str, loaded: Mapping[int, ServedModel]) -> dict[str, dict[str, Any] | None]:
        """Version (as a string, like every version key in the JSON) -> interface, for every
        version published or loaded; None for a published manifest that cannot be read."""
        versions = {v for n, v in self._read if n == name} | set(loaded)
        return {
            str(v): interface(loaded[v].manifest) if v in loaded else self._read[(name, v)][1]
            for v in sorted(versions)
        }
