"""Run one ```python block of a doc: `python pyrun.py DOC FENCE_LINE SOURCE_FILE`, in the block's
working directory.

The code runs compiled under the doc's own name, shifted to its lines, so a traceback says
`File "docs/client.md", line 147`. A `print(...)` followed by a comment states what it prints:

    print(images.shape, images.dtype)  # (3, 32, 32, 1) uint8

and what it prints must match (`...` stands for anything, white space for any white space). A
comment starting with "e.g." is an example and not checked. Every checked print must run at least
once: a stated output whose line the code never reaches is an error too.
"""

from __future__ import annotations

import ast
import builtins
import io
import sys
import tokenize
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the harness, from any directory

from tests.docs.markdown import matches  # after the path is set


def stated_outputs(source: str) -> dict[int, tuple[int, str]]:
    """Every line of a print() call with a stated output: the call's last line, and the output."""
    comments = {
        token.start[0]: token.string.lstrip("#").strip()
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }
    stated: dict[int, tuple[int, str]] = {}
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"):
            continue
        end = node.end_lineno or node.lineno
        comment = comments.get(end)
        if comment and not comment.lower().startswith("e.g."):
            for line in range(node.lineno, end + 1):
                stated[line] = (end, comment)
    return stated


def run(doc: str, fence_line: int, code: str) -> None:
    source = "\n" * fence_line + code  # line N of the doc is line N of the code
    stated = stated_outputs(source)
    ran: set[int] = set()
    real_print = builtins.print

    def checked_print(*args: Any, sep: str | None = " ", end: str | None = "\n", **kwargs: Any) -> None:
        real_print(*args, sep=sep, end=end, **kwargs)
        caller = sys._getframe(1)
        if caller.f_code.co_filename != doc or kwargs.get("file") not in (None, sys.stdout):
            return
        if caller.f_lineno not in stated:
            return
        line, expected = stated[caller.f_lineno]
        ran.add(line)
        text = (" " if sep is None else sep).join(map(str, args))
        if not matches(expected, text):
            raise AssertionError(f"{doc}:{line}: printed {text!r}; the doc says {expected!r}")

    namespace: dict[str, Any] = {"__name__": "__main__", "print": checked_print}
    exec(compile(source, doc, "exec"), namespace)
    never = sorted({line for line, _ in stated.values()} - ran)
    if never:
        raise AssertionError(f"{doc}: the stated output of line(s) {never} was never printed")


def main(doc: str, fence_line: int, source: Path) -> int:
    try:
        run(doc, fence_line, source.read_text())
    except BaseException as exc:
        traceback.print_exc()
        # the doc's own line that raised, for the failure's first line
        frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == doc]
        where = f"{doc}:{frames[-1].lineno}" if frames else doc
        print(f"doc-test: {where}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])))
