"""The one error type export reports: the CLI prints its message and exits 2."""

from __future__ import annotations


class ExportError(RuntimeError):
    """A checkpoint that cannot be exported, or an exported model that cannot be published."""


def first_line(e: BaseException) -> str:
    """An exception's first line (a foreign library's message can run to pages), or its type."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
