"""Servers in the documentation: the lines that start one, and the ports the docs use.

A line that starts a server (`make serve`, `gan-serve ...`, `python -m service ...`, with or
without `VAR=value` settings before it and `&` after it) is not run blindly: serverctl.py starts
it on a free port in place of the doc's, holds the doc's port for it, and stops it when the file
is done. `make serve` runs `gan-serve --models models` from .venv, the program the target runs
from .venv-serve (which the test does not build: it would install the serve extra again).

The docs keep their port numbers: every `localhost:PORT` and `127.0.0.1:PORT` in a block, and
GAN_CLIENT_URL's default, are rewritten to the real port the file's port maps to (`Ports`).
"""

from __future__ import annotations

import re
import shlex
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.docs.quick import split_assignments
from tests.docs.shell import words

DEFAULT_PORT = 8000
SERVERCTL = Path(__file__).with_name("serverctl.py")
URL_PORT = re.compile(r"\b(localhost|127\.0\.0\.1):(\d{2,5})\b")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Start:
    port: int  # the doc's
    command: list[str]  # the server's words, without --port
    background: bool


def server_start(simple: str) -> Start | None:
    """The server a simple command starts, if it starts one."""
    assignments, argv = words(simple)
    background = simple.rstrip().endswith("&")
    if argv[:2] == ["make", "serve"]:
        command = ["gan-serve", "--models", "models"]
    elif argv[:1] == ["gan-serve"] or argv[:3] in (["python", "-m", "service"], ["python3", "-m", "service"]):
        command = list(argv)
    else:
        return None
    port = int(assignments.get("GAN_SERVE_PORT", DEFAULT_PORT))
    rest: list[str] = []
    i = 0
    while i < len(command):
        if command[i] == "--port" and i + 1 < len(command):
            port = int(command[i + 1])
            i += 2
            continue
        if command[i].startswith("--port="):
            port = int(command[i].split("=", 1)[1])
        else:
            rest.append(command[i])
        i += 1
    return Start(port, rest, background)


def managed(simple: str, start: Start, real: int, state: Path, at: str, block: str) -> str:
    """The shell text that starts `start` through serverctl.py, its settings kept as written."""
    prefix, _ = split_assignments(simple)
    prefix = re.sub(r"\bGAN_SERVE_PORT=\S+\s*", "", prefix)
    ctl = [sys.executable, str(SERVERCTL), "--state", str(state), "--at", at, "--block", block]
    ctl += ["--port", str(start.port), "--real", str(real)]
    # the server's own words are re-quoted; $VARIABLES in them stay unexpanded as the doc wrote them
    argv = " ".join(_requote(a) for a in [*start.command, "--port", str(real)])
    if not start.background:
        return f"{prefix}{shlex.join(ctl)} -- {argv}"
    check = f"{shlex.join([*ctl, '--check'])} -- {argv}"
    return f"{check}\n{prefix}{shlex.join([*ctl, '--background'])} -- {argv} &"


def _requote(word: str) -> str:
    return word if re.fullmatch(r"[\w@%+=:,./$-]+", word) else shlex.quote(word)


@dataclass
class Ports:
    """One Markdown file's doc ports and the real ports they stand for. A port some block of the
    file starts a server on gets a private free port; 8000 in a file that starts no server of its
    own is the suite's shared server (blocks marked `server`); any other port is a free one that
    nothing listens on, so a command that needs a server nobody started fails as it would."""

    private: set[int]
    shared: Callable[[], int]
    real: dict[int, int] = field(default_factory=dict)

    def __call__(self, port: int, *, shared_ok: bool = False) -> int:
        if port not in self.real:
            if port == DEFAULT_PORT and port not in self.private:
                if not shared_ok:
                    return free_port()  # not kept: a later block marked `server` gets the shared one
                self.real[port] = self.shared()
            else:
                self.real[port] = free_port()
        return self.real[port]

    def rewrite(self, text: str, *, shared_ok: bool = False) -> str:
        return URL_PORT.sub(lambda m: f"{m[1]}:{self(int(m[2]), shared_ok=shared_ok)}", text)
