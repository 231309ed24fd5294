"""Start a documented server as the documentation test manages it (run by the block's shell in
place of the line that starts it; see servers.py for the rewriting):

    serverctl.py --state DIR --at FILE:LINE --block FILE:LINE --port DOC_PORT --real PORT
                 [--background] [--check] -- COMMAND...

One doc port is held by one server at a time, as on the reader's machine. Starting a server on a
port that a server still holds fails, naming the line that started it, unless that one was
started in the foreground by the same block: a block that lists alternatives (`make serve`, or
`gan-serve ...`) is read as "run one of these", so the next one replaces the last. A server the
doc stopped itself (`kill %1`) holds nothing.

In the foreground the server runs in a session of its own and this waits until /readyz answers
200 (the reader watches its log, then uses another shell); in the background (`... &`) this
becomes the server (exec: `$!` and `kill %1` reach it) and does not wait: a doc that starts a
server in the background must wait for it itself. A background start is preceded by the same
call with --check, in the foreground: a port still held must fail the block where the reader's
`gan-serve ... &` would fail, not in a background job whose failure nobody sees.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

READY_TIMEOUT_S = 120


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie no longer serves
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    return True


def stop(pid: int, timeout: float = 30) -> None:
    """SIGTERM to the server's process group (its own session), SIGKILL if it stays."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


@contextlib.contextmanager
def locked_state(state_dir: Path) -> Iterator[dict[str, dict[str, object]]]:
    """The servers this file's blocks started, by doc port, read and written under a lock."""
    path = state_dir / "servers.json"
    with (state_dir / "servers.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        servers = json.loads(path.read_text()) if path.exists() else {}
        yield servers
        path.write_text(json.dumps(servers, indent=1))


def wait_ready(pid: int, port: int, log: Path) -> str | None:
    """None once /readyz answers 200; else why not."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not alive(pid):
            return f"the server exited before it was ready; its log:\n{tail(log)}"
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer,
        ):
            if answer.status == 200:
                return None
        time.sleep(0.1)
    return f"not ready after {READY_TIMEOUT_S} s; its log:\n{tail(log)}"


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--state", type=Path, required=True)
    p.add_argument("--at", required=True)
    p.add_argument("--block", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--real", type=int, required=True)
    p.add_argument("--background", action="store_true")
    p.add_argument("--check", action="store_true", help="only say whether the port is free to start on")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    log = args.state / f"server-{args.at.replace('/', '_').replace(':', '-')}.log"
    with locked_state(args.state) as servers:
        holder = servers.get(str(args.port))
        if holder is not None and alive(int(str(holder["pid"]))):
            alternatives = holder["block"] == args.block and holder["foreground"] and not args.background
            if not alternatives:
                print(
                    f"doc-test: port {args.port} is still held by the server started at {holder['at']} "
                    f"({holder['command']}), which nothing in the doc has stopped: the reader's "
                    f"server would not start (address already in use), or the commands after it would "
                    "reach the old one. Say to stop that one first, or give this one another port.",
                    file=sys.stderr,
                )
                return 98
            if not args.check:
                stop(int(str(holder["pid"])))
        if args.check:
            return 0
        entry = {"at": args.at, "block": args.block, "foreground": not args.background, "log": str(log)}
        entry["command"] = " ".join(command)
        if args.background:
            os.setsid()
            servers[str(args.port)] = {**entry, "pid": os.getpid()}
        else:
            with log.open("wb") as out:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            servers[str(args.port)] = {**entry, "pid": process.pid}
    if args.background:
        descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(descriptor, 1)
        os.dup2(descriptor, 2)
        os.execvp(command[0], command)
    started = time.monotonic()
    problem = wait_ready(process.pid, args.real, log)
    if problem:
        print(f"doc-test: the server started at {args.at} is not serving: {problem}", file=sys.stderr)
        return 1
    print(f"doc-test: the server of {args.at} is ready ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
