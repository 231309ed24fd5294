"""The documentation's code blocks: fenced blocks of Markdown files, with the doc-test markers
written as HTML comments on the lines just above a fence (invisible when the file is rendered).

The marker vocabulary (docs/testing.md, "The documentation as a test"):

    <!-- doc-test: skip: REASON -->   not run: REASON says why, and which test covers it instead
    <!-- doc-test: server -->         needs the service on port 8000 running the bundled models
                                      (`make serve`), without starting it itself
    <!-- doc-test: time: SECONDS -->  a longer time limit than the default for this one block

Several markers may stand on consecutive lines above one fence. A marker that stands above no
fence, or one outside this vocabulary, is an error: a typo must not quietly turn a check off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

RUNNABLE = {"bash": "shell", "sh": "shell", "console": "console", "python": "python"}
MARKER = re.compile(r"^\s*<!--\s*doc-test:\s*(?P<body>.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*$")
KINDS = ("skip", "server", "time")


class MarkerError(ValueError):
    pass


@dataclass(frozen=True)
class Marker:
    kind: str
    argument: str = ""


@dataclass(frozen=True)
class Block:
    path: str  # relative to the repository root, as the test ids show it
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    markers: tuple[Marker, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def kind(self) -> str | None:
        """shell, console or python; None for blocks that are not run (text, toml, ...)."""
        return RUNNABLE.get(self.language)

    def marker(self, kind: str) -> Marker | None:
        return next((m for m in self.markers if m.kind == kind), None)

    @property
    def skip_reason(self) -> str | None:
        found = self.marker("skip")
        return None if found is None else found.argument

    @property
    def needs_server(self) -> bool:
        return self.marker("server") is not None

    @property
    def time_limit(self) -> float | None:
        found = self.marker("time")
        return None if found is None else float(found.argument)


def parse_marker(body: str, where: str) -> Marker:
    kind, _, argument = body.partition(":")
    kind, argument = kind.strip(), argument.strip()
    if kind not in KINDS:
        raise MarkerError(f"{where}: unknown doc-test marker {kind!r} (known: {', '.join(KINDS)})")
    if kind == "skip" and not argument:
        raise MarkerError(f"{where}: a skip marker needs its reason: <!-- doc-test: skip: REASON -->")
    if kind == "server" and argument:
        raise MarkerError(f"{where}: the server marker takes no argument")
    if kind == "time":
        try:
            float(argument)
        except ValueError:
            raise MarkerError(f"{where}: doc-test time takes seconds, not {argument!r}") from None
    return Marker(kind, argument)


def parse(path: str, text: str) -> list[Block]:
    """Every fenced block of a Markdown file, in order, with the markers above it."""
    lines = text.splitlines()
    blocks: list[Block] = []
    pending: list[Marker] = []
    pending_line = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = MARKER.match(line)
        if marker:
            pending.append(parse_marker(marker["body"], f"{path}:{i + 1}"))
            pending_line = pending_line or i + 1
            i += 1
            continue
        opening = FENCE.match(line)
        if opening is None:
            if pending:
                raise MarkerError(f"{path}:{pending_line}: a doc-test marker must stand just above a fence")
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        closing = re.compile(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            # a fence indented in a list item: its lines lose that indentation, and no more
            body.append(lines[j][indent:] if not lines[j][:indent].strip() else lines[j].lstrip())
            j += 1
        if j == len(lines):
            raise MarkerError(f"{path}:{i + 1}: a fence that is never closed")
        blocks.append(Block(path, i + 1, opening["info"].lower(), "\n".join(body) + "\n", tuple(pending)))
        pending, pending_line = [], 0
        i = j + 1
    if pending:
        raise MarkerError(f"{path}:{pending_line}: a doc-test marker must stand just above a fence")
    return blocks


def expected_pattern(expected: str) -> re.Pattern[str]:
    """A stated output as a pattern: `...` stands for anything (doctest's ELLIPSIS), and any run
    of white space for any other, so that line wrapping in the doc does not matter."""
    parts = [r"\s+".join(map(re.escape, piece.split())) for piece in expected.strip().split("...")]
    return re.compile(r"\s*" + r"[\s\S]*?".join(parts) + r"\s*", re.ASCII)


def matches(expected: str, actual: str) -> bool:
    return expected_pattern(expected).fullmatch(actual) is not None


def documents(root: Path) -> list[Path]:
    """The Markdown files whose blocks are run: README.md, docs/*.md and bench/README.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md")), root / "bench" / "README.md"]
