"""One Markdown file's way through its blocks (`DocRun`): a working directory that looks like the
repository root, the file's servers, and its runnable blocks in document order.

The working directory links the repository's tracked top-level entries (configs/, training/,
docs/, ...: read only, by convention) and copies what a doc may write into (models/, and bench/,
whose scripts write bench/results/ next to themselves); everything a doc makes (runs/, my-models/,
images) lands in it, never in the checkout or the user's files: HOME is a directory of its own.
Blocks of a file share it and run in order, because the docs build on earlier steps; a block
asked for on its own runs the ones before it first, and once a block fails the later ones of the
file are skipped, naming it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.docs import quick, servers
from tests.docs.markdown import Block, matches, parse
from tests.docs.serverctl import alive, locked_state, stop
from tests.docs.shell import Command, simple_commands, split_commands, words

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
COPIED = ("models", "bench")
TIME_LIMIT_S = 240.0
KEEP_GOING = "GAN_DOCS_KEEP_GOING"  # set: a block after a failed one runs anyway (to see every failure)
UNIT = re.compile(r"\x1edoc-test (\d+)\x1e\n")


@dataclass
class Outcome:
    status: str  # passed, failed or skipped
    message: str = ""
    report: str = ""  # what was run in place of what is written, and how long it took


def make_workspace(root: Path) -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, text=True
    ).stdout
    names = {path.split("/", 1)[0] for path in tracked.split("\0") if path}
    root.mkdir(parents=True)
    # never .venv: a doc's `python3 -m venv .venv` or `pip install -e .` would change the suite's
    # own environment through the link (make -n only prints what it would install)
    for name in sorted(names - {".venv", ".venv-serve", "runs"}):
        source = REPO / name
        if not source.exists():
            continue
        if name in COPIED:
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (root / name).symlink_to(source, target_is_directory=source.is_dir())


class DocRun:
    def __init__(self, path: str, base: Path, shared: Callable[[], int], text: str | None = None) -> None:
        """`path` relative to the repository; `text`, when given, stands for the file's (tests)."""
        self.path = path
        self.blocks = [b for b in parse(path, (REPO / path).read_text() if text is None else text) if b.kind]
        self.root, self.state, self.home = base / "repo", base / "state", base / "home"
        make_workspace(self.root)
        self.state.mkdir()
        self.home.mkdir()
        self.ports = servers.Ports(self._started_ports(), shared)
        self.outcomes: dict[int, Outcome] = {}
        self.commands = [  # every command that runs, in order: what reads a training run
            (command.line, command.code)
            for block in self.blocks
            if block.kind == "shell" and not block.skip_reason
            for command in split_commands(block.text, block.line + 1)
        ]

    def _started_ports(self) -> set[int]:
        ports: set[int] = set()
        for block in self.blocks:
            if block.kind != "shell" or block.skip_reason:
                continue
            for command in split_commands(block.text, block.line + 1):
                for piece in simple_commands(command.head()):
                    start = servers.server_start(piece)
                    if start is not None:
                        ports.add(start.port)
        return ports

    def reader(self, directory: str, after: int) -> str | None:
        """The first later command of the file that names `directory` (None: none does)."""
        line = next((n for n, code in self.commands if n > after and quick.reads(code, directory)), None)
        return None if line is None else f"{self.path}:{line}"

    def outcome(self, block: Block) -> Outcome:
        """The block's outcome, running it (and first the file's earlier blocks, if they have not
        run) unless it ran already."""
        set_up: list[str] = []
        for earlier in self.blocks:
            if earlier.line not in self.outcomes:
                started = time.monotonic()
                result = self._run(earlier)
                result.report += f"\n{earlier.id}: {result.status} in {time.monotonic() - started:.1f} s"
                self.outcomes[earlier.line] = result
                if earlier.line != block.line:
                    set_up.append(result.report.rsplit("\n", 1)[-1])
            if earlier.line == block.line:
                break
        outcome = self.outcomes[block.line]
        if set_up:
            outcome.report = "run first:\n" + "\n".join(set_up) + "\n" + outcome.report
        return outcome

    def _run(self, block: Block) -> Outcome:
        if block.skip_reason:
            return Outcome("skipped", f"{block.id}: marked skip: {block.skip_reason}")
        failed = [b for b in self.blocks if self.outcomes.get(b.line, Outcome("")).status == "failed"]
        if failed and not os.environ.get(KEEP_GOING):
            why = f"{failed[0].id} failed before this block: {self.path}'s way through stops there"
            return Outcome("skipped", why)
        if block.needs_server:
            problem = self._no_server()
            if problem:
                return Outcome("failed", f"{block.id}: {problem}")
        if block.kind == "python":
            return self._python(block)
        return self._shell(block)

    def _no_server(self) -> str | None:
        if servers.DEFAULT_PORT not in self.ports.private:
            return None  # the suite's shared server answers
        with locked_state(self.state) as started:
            holder = started.get(str(servers.DEFAULT_PORT))
        if holder is None:
            return "marked `server`, but no block of the file has started one on port 8000 yet"
        if not alive(int(str(holder["pid"]))):
            return f"marked `server`, but the server started at {holder['at']} is no longer running"
        return None

    def environment(self, block: Block) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GAN_SERVE_", "GAN_API_KEY"))}
        env.update(
            PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            VIRTUAL_ENV=str(VENV_BIN.parent),
            HOME=str(self.home),
            GAN_CLIENT_URL=f"http://127.0.0.1:{self.ports(8000, shared_ok=block.needs_server)}",
            MPLBACKEND="Agg",
            # .venv/bin is first on PATH: a pip command no quick form caught (quick._installs)
            # must not reinstall the suite's own environment (conftest.py checks it did not)
            PIP_DRY_RUN="1",
        )
        env.pop("PYTHONPATH", None)
        return env

    # --- shell ----------------------------------------------------------------------------------

    def prepare(self, block: Block, command: Command, notes: list[str]) -> str:
        """The command as the harness runs it: servers managed, quick forms, real ports."""
        head, newline, body = command.code.partition("\n")
        at = f"{self.path}:{command.line}"
        pieces = simple_commands(head)
        for i, piece in enumerate(pieces):
            if i % 2:
                continue  # a separator
            start = servers.server_start(piece)
            if start is not None:
                real = self.ports(start.port)
                pieces[i] = servers.managed(piece, start, real, self.state, at, block.id) + " "
                notes.append(f"{at}: server [doc port {start.port}, real port {real}] `{piece.strip()}`")
                continue
            # a console transcript runs exactly as written: its output is the point
            form = None if block.kind == "console" else quick.quick_form(piece)
            if form is not None and form.action == "train":
                assert form.rewrite is not None
                # a resumed run's directory is there already for whatever reads it later
                resumes = "--resume" in words(piece)[1]
                reader = None if resumes else self.reader(quick.run_directory(piece) or "", command.line)
                dry = reader is not None or bool(os.environ.get(quick.DRY_RUN_ALL))
                pieces[i] = (form.rewrite(piece) if dry else quick.as_argcheck(piece)) + " "
                said = any("[training]" in note for note in notes)
                what = f"dry run ({reader} reads its directory)" if reader else "dry run" if dry else "args"
                notes.append(
                    f"{at}: {what} [training] `{piece.strip()}`" + ("" if said else f"\n    {form.why}")
                )
                continue
            if form is None:
                pieces[i] = self.ports.rewrite(piece, shared_ok=block.needs_server)
                continue
            if form.action == "skip":
                pieces[i] = f" echo 'doc-test: not run ({form.name})' "
            else:
                assert form.rewrite is not None
                pieces[i] = self.ports.rewrite(form.rewrite(piece), shared_ok=block.needs_server) + " "
            # each form's reason once per block
            said = any(f"[{form.name}]" in note for note in notes)
            notes.append(
                f"{at}: {form.action} [{form.name}] `{piece.strip()}`" + ("" if said else f"\n    {form.why}")
            )
        return "".join(pieces) + newline + self.ports.rewrite(body, shared_ok=block.needs_server)

    def _shell(self, block: Block) -> Outcome:
        console = block.kind == "console"
        commands, expected = (
            console_commands(block) if console else (split_commands(block.text, block.line + 1), {})
        )
        notes: list[str] = []
        status_file = self.state / f"status-{block.line}"
        # errexit, as a reader stops at a failing command; no pipefail, which a reader's shell
        # does not have (`curl ... | head -c 300` is fine though curl sees a closed pipe)
        script = [
            "__doc_line=0",
            f"trap 'echo \"$__doc_line $?\" > {status_file}' EXIT",
            "__doc_at() { __doc_line=$1; printf '\\036doc-test %s\\036\\n' \"$1\"; }",
            "" if console else "set -e",
        ]
        for command in commands:
            script += [f"__doc_at {command.line}", self.prepare(block, command, notes)]
        script_path = self.state / f"block-{block.line}.sh"
        script_path.write_text("\n".join(script) + "\n")
        output_path = self.state / f"output-{block.line}.txt"
        timed_out = run_group(["bash", str(script_path)], self, block, output_path) is None
        outputs = split_outputs(output_path.read_text(errors="replace"))
        status = status_file.read_text().split() if status_file.exists() else ["0", "-1"]
        line, code = int(status[0]), int(status[1])
        report = "\n".join(notes)
        text = {c.line: c.text for c in commands}
        if timed_out:
            return Outcome("failed", self._failure(block, line, text, outputs, "timed out"), report)
        if code != 0 and not console:
            return Outcome("failed", self._failure(block, line, text, outputs, f"exited with {code}"), report)
        for line, stated in expected.items():
            if not matches(stated, outputs.get(line, "")):
                why = f"printed other than the doc says:\n--- the doc ---\n{stated}"
                return Outcome("failed", self._failure(block, line, text, outputs, why), report)
        return Outcome("passed", "", report)

    def _failure(
        self, block: Block, line: int, text: dict[int, str], outputs: dict[int, str], why: str
    ) -> str:
        lines = outputs.get(line, "").splitlines()[-60:]
        message = [
            f"{self.path}:{line}: {why}",
            f"(the block at {block.id}; the command as written:)",
            text.get(line, "?"),
            f"--- its output (the last {len(lines)} lines) ---",
            *lines,
        ]
        with locked_state(self.state) as started:
            for port, server in started.items():
                if server["block"] == block.id:
                    log = Path(str(server["log"]))
                    tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
                    message += [f"--- the log of the server on doc port {port} ({server['at']}) ---", *tail]
        return "\n".join(message)

    # --- python ---------------------------------------------------------------------------------

    def _python(self, block: Block) -> Outcome:
        source = self.state / f"block-{block.line}.py"
        source.write_text(self.ports.rewrite(block.text, shared_ok=block.needs_server))
        output_path = self.state / f"output-{block.line}.txt"
        runner = Path(__file__).with_name("pyrun.py")
        argv = [sys.executable, str(runner), self.path, str(block.line), str(source)]
        code = run_group(argv, self, block, output_path)
        output = output_path.read_text(errors="replace")
        if code != 0:
            why = "timed out" if code is None else f"exited with {code}"
            raised = [line for line in output.splitlines() if line.startswith("doc-test: ")]
            headline = raised[-1].removeprefix("doc-test: ") if raised else f"{block.id}: {why}"
            tail = "\n".join(output.splitlines()[-60:])
            return Outcome(
                "failed", f"{headline}\n(the python block at {block.id} {why}; its output:)\n{tail}"
            )
        return Outcome("passed")

    def close(self) -> None:
        """Stop every server the file's blocks started (each in a process group of its own)."""
        with locked_state(self.state) as started:
            for server in started.values():
                pid = int(str(server["pid"]))
                if alive(pid):
                    stop(pid)


def run_group(argv: list[str], run: DocRun, block: Block, output: Path) -> int | None:
    """Run a block's process in a process group of its own, output to a file (a background job
    that keeps the file open cannot hold the test up), then kill what is left of the group. Its
    exit status; None when it ran out of time."""
    limit = block.time_limit or TIME_LIMIT_S
    with output.open("wb") as out:
        process = subprocess.Popen(
            argv,
            cwd=run.root,
            env=run.environment(block),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            status: int | None = process.wait(limit)
        except subprocess.TimeoutExpired:
            status = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return status


def split_outputs(text: str) -> dict[int, str]:
    """Each command's output, by its line, from the markers the script prints before each."""
    parts = UNIT.split(text)
    return {int(parts[i]): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def console_commands(block: Block) -> tuple[list[Command], dict[int, str]]:
    """A ```console transcript: `$ command` lines, each followed by what it prints."""
    commands: list[Command] = []
    expected: dict[int, str] = {}
    for offset, line in enumerate(block.text.splitlines()):
        number = block.line + 1 + offset
        if line.startswith("$ "):
            commands.append(Command(number, line[2:], line[2:]))
            expected[number] = ""
        elif commands:
            expected[commands[-1].line] += line + "\n"
    return commands, expected
