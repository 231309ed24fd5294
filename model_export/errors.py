"""The one error type export reports: the CLI prints its message and exits 2."""

from __future__ import annotations


class ExportError(RuntimeError):
    """A checkpoint that cannot be exported, or an exported model that cannot be published."""
