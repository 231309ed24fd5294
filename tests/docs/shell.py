"""Shell blocks cut into the commands a reader types one at a time, each with its line in the doc.

A command ends at the end of a line unless the line goes on: a trailing backslash, an open quote
or `$(`, a trailing `|`, `&&` or `||`, or a here-document (`<<'EOF'`) up to its delimiter. The
command keeps its text as written, and a `code` form for the harness to read and rewrite: comments
removed and continued lines joined, the here-document's body kept verbatim.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SEPARATORS = ("&&", "||", ";", "|")


@dataclass(frozen=True)
class Command:
    line: int  # in the Markdown file
    text: str  # as written (comments and continuation lines included)
    code: str  # comments removed, continuations joined; a here-document's body verbatim

    @property
    def background(self) -> bool:
        return self.head().rstrip().endswith("&") and not self.head().rstrip().endswith("&&")

    def head(self) -> str:
        """The command line itself, without a here-document's body."""
        return self.code.split("\n", 1)[0]


@dataclass
class _Scan:
    quote: str = ""  # the open quote character, if any
    parens: int = 0  # open $( ... )
    heredocs: tuple[str, ...] = ()


def _scan_line(line: str, state: _Scan) -> tuple[str, list[str]]:
    """The line without its comment, and the here-document delimiters it opens; `state` carries
    quotes and $( across lines."""
    out: list[str] = []
    delimiters: list[str] = []
    i = 0
    while i < len(line):
        c = line[i]
        if state.quote == "'":
            state.quote = "" if c == "'" else "'"
        elif state.quote == '"':
            if c == "\\" and i + 1 < len(line):
                out.append(c)
                i += 1
                c = line[i]
            elif c == '"':
                state.quote = ""
        elif c == "\\" and i + 1 < len(line):
            out.append(c)
            i += 1
            c = line[i]
        elif c in "'\"":
            state.quote = c
        elif c == "#" and (i == 0 or line[i - 1] in " \t;|&("):
            break
        elif line.startswith("$(", i):
            state.parens += 1
        elif c == ")" and state.parens:
            state.parens -= 1
        elif line.startswith("<<", i) and not line.startswith("<<<", i):
            match = re.match(r"<<-?\s*(['\"]?)([A-Za-z0-9_]+)\1", line[i:])
            if match:
                delimiters.append(match[2])
                out.append(match[0])
                i += len(match[0])
                continue
        out.append(c)
        i += 1
    return "".join(out).rstrip(), delimiters


def split_commands(text: str, first_line: int) -> list[Command]:
    """The commands of a shell block whose first line is line `first_line` of its file."""
    lines = text.splitlines()
    commands: list[Command] = []
    i = 0
    while i < len(lines):
        start = i
        state = _Scan()
        pieces: list[str] = []
        delimiters: list[str] = []
        while i < len(lines):
            code, opened = _scan_line(lines[i], state)
            delimiters += opened
            i += 1
            continued = code.endswith("\\") and not code.endswith("\\\\")
            if continued:
                code = code[:-1]
            pieces.append(code.strip())
            if not (continued or state.quote or state.parens or code.endswith(("|", "&&", "||"))):
                break
        body: list[str] = []
        for delimiter in delimiters:
            while i < len(lines):
                body.append(lines[i])
                i += 1
                if lines[i - 1].strip() == delimiter:
                    break
        code = " ".join(p for p in pieces if p)
        if not code:
            continue  # a blank or comment line
        commands.append(
            Command(first_line + start, "\n".join(lines[start:i]), "\n".join([code, *body]) if body else code)
        )
    return commands


def simple_commands(code: str) -> list[str]:
    """A command line cut at ;, &&, || and | outside quotes (the pieces keep their text)."""
    pieces: list[str] = []
    quote = ""
    current = ""
    i = 0
    while i < len(code):
        c = code[i]
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        else:
            separator = next((s for s in SEPARATORS if code.startswith(s, i)), None)
            if separator:
                pieces.append(current)
                pieces.append(separator)
                current = ""
                i += len(separator)
                continue
        current += c
        i += 1
    pieces.append(current)
    return pieces


def words(simple: str) -> tuple[dict[str, str], list[str]]:
    """A simple command's leading VAR=value assignments (unexpanded) and its words."""
    try:
        tokens = shlex.split(simple.rstrip().rstrip("&"), comments=False)
    except ValueError:
        return {}, []
    assignments: dict[str, str] = {}
    while tokens and ASSIGNMENT.match(tokens[0]):
        name, _, value = tokens.pop(0).partition("=")
        assignments[name] = value
    return assignments, tokens
