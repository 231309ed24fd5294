"""The documentation test's harness on its own: Markdown fences and markers, shell commands and
their lines, the quick forms, stated outputs, and (with real servers) the rules a doc's servers
follow: a port held by a server nobody stopped, and a background start nobody waited for."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs import quick
from tests.docs.markdown import MarkerError, matches, parse
from tests.docs.pyrun import run as run_python
from tests.docs.servers import Ports, server_start
from tests.docs.shell import simple_commands, split_commands
from tests.docs.workspace import DocRun, Outcome


def test_fences_markers_and_lines() -> None:
    text = "# t\n\n<!-- doc-test: skip: no engine -->\n```bash\nls\n```\n\n"
    text += "```python\nx = 1\n```\n```text\nhi\n```\n"
    blocks = parse("x.md", text)
    assert [(b.line, b.kind, b.skip_reason) for b in blocks] == [
        (4, "shell", "no engine"),
        (8, "python", None),
        (11, None, None),
    ]
    assert blocks[1].text == "x = 1\n"


def test_an_indented_fence_keeps_the_code_indentation() -> None:
    blocks = parse("x.md", "- a list item:\n  ```python\n  if x:\n      y()\n  ```\n")
    assert blocks[0].text == "if x:\n    y()\n"


@pytest.mark.parametrize(
    "text",
    [
        "<!-- doc-test: skipp: x -->\n```bash\nls\n```\n",
        "<!-- doc-test: server -->\n\ntext\n",
        "<!-- doc-test: skip -->\n```bash\n```\n",
    ],
)
def test_a_marker_that_would_quietly_do_nothing_is_an_error(text: str) -> None:
    with pytest.raises(MarkerError, match=r"x\.md:1"):
        parse("x.md", text)


def test_commands_keep_their_lines_continuations_heredocs_and_comments() -> None:
    block = (
        "a --x 1 \\\n   --y 2   # a comment\n\n# only a comment\n"
        "python - <<'EOF'   # note\nprint('#not a comment')\nEOF\n"
        "b 'quoted\nacross lines' && c |\n  d\n"
    )
    commands = split_commands(block, 10)
    assert [c.line for c in commands] == [10, 14, 17]
    assert commands[0].code == "a --x 1 --y 2"
    assert commands[1].code == "python - <<'EOF'\nprint('#not a comment')\nEOF"
    assert commands[2].head() == "b 'quoted across lines' && c | d"
    assert simple_commands("A=1 x; y && z | w") == ["A=1 x", ";", " y ", "&&", " z ", "|", " w"]


@pytest.mark.parametrize(
    ("command", "name", "action"),
    [
        ("make test PYTEST_ARGS='-q'", "make -n", "rewrite"),
        ("make serve", None, None),
        ("pip install -e '.[client]'", "install", "skip"),
        ("python3 -m venv .venv", "install", "skip"),
        ("gan-train --config configs/ring8.toml --out runs/x", "training", "train"),
        ("torchrun --nproc_per_node=2 -m training --config c.toml", "training", "train"),
        ("gan-train eval runs/x", None, None),
        ("gan-train compare configs/ring8.toml", "training", "train"),
        ("python bench/soak.py --duration 180", "benchmark", "args"),
        ("curl -s localhost:8000/readyz", "curl --fail-with-body", "rewrite"),
        ("curl -sf localhost:8000/x -o x.png", None, None),
        ("curl -s -o /dev/null -w '%{http_code}' localhost:8000/x", None, None),
        ("gan-client generate --n 100000 --out d", "--n 1000", "rewrite"),
        ("gan-client generate --n 1000 --out d", None, None),
    ],
)
def test_the_quick_forms_table(command: str, name: str | None, action: str | None) -> None:
    form = quick.quick_form(command)
    assert (form and form.name, form and form.action) == (name, action)


def test_quick_forms_keep_the_arguments() -> None:
    assert quick.quick_form("make compare").rewrite("make compare") == "make -n compare"  # type: ignore[misc, union-attr]
    train = quick.quick_form("gan-train --config c.toml --out runs/a &")
    assert train is not None and train.rewrite is not None
    assert (
        train.rewrite("gan-train --config c.toml --out runs/a &")
        == "gan-train --config c.toml --out runs/a --dry-run &"
    )
    assert train.rewrite("gan-train --config c.toml --dry-run") == "gan-train --config c.toml --dry-run"
    assert quick.run_directory("gan-train --config configs/sr_x4.toml") == "runs/sr_x4"
    assert quick.reads("gan-train seeds runs/ring8 runs/ring8-s1", "runs/ring8")
    assert not quick.reads("gan-train seeds runs/ring8b runs/ring8-s1", "runs/ring8")


def test_servers_and_ports() -> None:
    start = server_start("GAN_SERVE_API_KEYS=$KEY gan-serve --models models --port 8001 &")
    assert start is not None and (start.port, start.command, start.background) == (
        8001,
        ["gan-serve", "--models", "models"],
        True,
    )
    make = server_start("make serve")
    assert make is not None and (make.port, make.command) == (8000, ["gan-serve", "--models", "models"])
    assert server_start("gan-client health") is None
    ports = Ports({8000}, shared=lambda: 1)
    assert (
        ports.rewrite("curl localhost:8000/x http://127.0.0.1:8000")
        == f"curl localhost:{ports.real[8000]}/x http://127.0.0.1:{ports.real[8000]}"
    )
    shared = Ports(set(), shared=lambda: 4242)
    assert shared.rewrite("localhost:8000") != "localhost:4242"  # a block not marked `server`: nobody there
    assert shared.rewrite("localhost:8000", shared_ok=True) == "localhost:4242"


def test_stated_outputs_allow_ellipsis_and_other_white_space() -> None:
    assert matches(
        "404 unknown_model unknown model 'x'; ...", "404 unknown_model unknown model 'x'; served: a"
    )
    assert matches("(3, 32, 32,\n 1) uint8", "(3, 32, 32, 1) uint8")
    assert not matches("16.0 None 0", "7.4 None 0")


def test_a_python_print_is_checked_against_its_comment() -> None:
    run_python("x.md", 20, "print(1 + 1)  # 2\nprint(3)  # e.g. 4\n")
    with pytest.raises(AssertionError, match=r"x.md:21: printed '5'; the doc says '3'"):
        run_python("x.md", 20, "print(2 + 3)  # 3\n")
    with pytest.raises(AssertionError, match=r"line\(s\) \[22\] was never printed"):
        run_python("x.md", 20, "if False:\n    print(1)  # 1\n")


def doc_run(tmp_path: Path, text: str) -> DocRun:
    return DocRun("fake.md", tmp_path, shared=lambda: 1, text=text)


ONE_MODEL = "mkdir -p one && cp -r models/digits one/\n"


def test_a_second_server_on_a_port_still_held_fails_and_a_background_one_must_be_waited_for(
    tmp_path: Path,
) -> None:
    text = (
        f"```bash\n{ONE_MODEL}gan-serve --models one\n```\n\n"
        "```bash\ngan-serve --models one &\ncurl -s localhost:8000/readyz\n```\n\n"
        # refused (7) before gan-serve listens, or not answered within 0.5 s (28) while it loads
        "```bash\ngan-serve --models one --port 8001 &\ncurl -s -m 0.5 localhost:8001/readyz\n```\n"
    )
    run = doc_run(tmp_path, text)
    try:
        first, second, third = run.blocks
        assert run.outcome(first).status == "passed"
        held = run.outcome(second)
        assert held.status == "failed"
        assert "fake.md:7: exited with 98" in held.message
        assert "port 8000 is still held by the server started at fake.md:3" in held.message
        run.outcomes[second.line] = Outcome("passed")  # as if it had: the third block's own failure
        unwaited = run.outcome(third)
        assert unwaited.status == "failed"
        assert re.search(r"fake\.md:13: exited with (7|28)\b", unwaited.message), unwaited.message
    finally:
        run.close()
