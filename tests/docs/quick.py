"""QUICK_FORMS: the one table of what the documentation test runs in place of a command as written.

Everything else in a shell block runs exactly as written (with the ports of the servers the
harness starts: see servers.py). A quick form keeps the command's own arguments (config, --set,
--out, paths) and changes only what makes it long, and every test report lists the forms used:

- rewrite: the command runs with a change (`--dry-run` added, `make -n`, a smaller `--n`);
- args: the program parses its arguments (and a training recipe's config and --set values) and
  stops, without running: tests/docs/argcheck.py;
- skip: not run at all; the reason names what covers it instead.

A training command that repeats a recipe the same file already ran (the same config, overrides,
resume flag and launcher; --out, --dry-run and `steps` aside) is `args` too: see `repeat_key`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.docs.shell import words

ARGCHECK = f"{sys.executable} {Path(__file__).with_name('argcheck.py')}"
# bookkeeping keys: a dry run sets its own steps, so these do not make a run another recipe
BOOKKEEPING = {"steps", "log_every", "sample_every", "eval_every", "checkpoint_every", "keep_checkpoints"}
MAX_GENERATE_N = 1000


@dataclass(frozen=True)
class QuickForm:
    name: str
    applies: Callable[[list[str]], bool]
    action: str  # "rewrite", "args" or "skip"
    why: str
    rewrite: Callable[[str], str] | None = None


def _is_training(argv: list[str]) -> bool:
    """gan-train (train), python -m training, or torchrun ... -m training: a training run."""
    if argv[:1] == ["gan-train"]:
        return "--config" in argv and (len(argv) < 2 or argv[1] not in ("eval", "seeds", "compare"))
    if argv[:3] in (["python", "-m", "training"], ["python3", "-m", "training"]):
        return "--config" in argv
    return argv[:1] == ["torchrun"] and "training" in argv and "--config" in argv


def _append(flag: str) -> Callable[[str], str]:
    def rewrite(simple: str) -> str:
        body = simple.rstrip()
        background = body.endswith("&")
        return body.rstrip("&").rstrip() + f" {flag}" + (" &" if background else "")

    return rewrite


def _make_n(simple: str) -> str:
    return re.sub(r"\bmake\b", "make -n", simple, count=1)


def _smaller_n(simple: str) -> str:
    return re.sub(r"--n[ =](\d+)", lambda m: f"--n {min(int(m[1]), MAX_GENERATE_N)}", simple)


def _argcheck(simple: str) -> str:
    prefix, rest = split_assignments(simple)
    return f"{prefix}{ARGCHECK} {rest}"


def _fails(word: str) -> bool:
    """-f in any spelling, or -w: a curl that prints the status code itself."""
    if word in ("--fail", "--fail-with-body", "--write-out") or word.startswith("--write-out="):
        return True
    return re.fullmatch(r"-[a-zA-Z]*[fw][a-zA-Z]*", word) is not None


def _n_above(argv: list[str], limit: int) -> bool:
    for i, word in enumerate(argv):
        value = argv[i + 1] if word == "--n" and i + 1 < len(argv) else word.removeprefix("--n=")
        if (word == "--n" or word.startswith("--n=")) and value.isdigit() and int(value) > limit:
            return True
    return False


def _installs(argv: list[str]) -> bool:
    """pip (any spelling) or a new virtual environment: they would change the suite's own .venv,
    whose bin/ is first on every block's PATH."""
    if argv[:1] in (["pip"], ["pip3"]):
        return True
    return argv[:1] in (["python"], ["python3"]) and argv[1:3] in (["-m", "pip"], ["-m", "venv"])


QUICK_FORMS: tuple[QuickForm, ...] = (
    QuickForm(
        "install",
        _installs,
        "skip",
        "it would change the environment the suite runs in (the Makefile's venv target, which "
        "made it, runs the same pip commands)",
    ),
    QuickForm(
        "make -n",
        lambda argv: argv[:1] == ["make"] and "serve" not in argv,
        "rewrite",
        "make test, lint and typecheck run the suite this test is part of; compare, sr and models "
        "train for up to an hour; containers builds images as root: `make -n` checks that the "
        "target and its variables exist and prints what it would run",
        _make_n,
    ),
    QuickForm(
        "git worktree",
        lambda argv: argv[:2] == ["git", "worktree"],
        "skip",
        "it adds a worktree to the checkout's own git and writes outside the working directory; "
        "the comparison it prepares is serve_bench.py --checkout's, whose arguments are checked",
    ),
    QuickForm(
        "benchmark",
        lambda argv: (
            argv[:1] in (["python"], ["python3"])
            and argv[1:2] != ["-m"]
            and argv[1:2] != []
            and argv[1].startswith("bench/")
        ),
        "args",
        "a measurement of minutes (serve_bench.py also needs wrk): the script parses its arguments "
        "and stops; tests/bench runs the overload, soak, memory and swap benchmarks for seconds",
        _argcheck,
    ),
    QuickForm(
        "--dry-run",
        lambda argv: _is_training(argv) and "--dry-run" not in argv,
        "rewrite",
        "training takes minutes to an hour: --dry-run is the documented quick form (3 steps "
        "through every code path, docs/training.md); config, --set and --out stay as written",
        _append("--dry-run"),
    ),
    QuickForm(
        "compare --dry-run",
        lambda argv: argv[:2] == ["gan-train", "compare"] and "--dry-run" not in argv,
        "rewrite",
        "every loss on every recipe takes an hour: each run as a dry run",
        _append("--dry-run"),
    ),
    QuickForm(
        "curl --fail-with-body",
        lambda argv: argv[:1] == ["curl"] and not any(_fails(word) for word in argv[1:]),
        "rewrite",
        "without -f curl exits 0 on an HTTP error answer: --fail-with-body makes that answer fail "
        "the test; the reader sees the same body either way (not for a curl that prints its own "
        "status with -w, whose error answer is the point)",
        lambda simple: re.sub(r"\bcurl\b", "curl --fail-with-body", simple, count=1),
    ),
    QuickForm(
        f"--n {MAX_GENERATE_N}",
        lambda argv: argv[:2] == ["gan-client", "generate"] and _n_above(argv, MAX_GENERATE_N),
        "rewrite",
        f"a job of more than {MAX_GENERATE_N} images runs as one of {MAX_GENERATE_N}: the same "
        "requests, fewer of them",
        _smaller_n,
    ),
)


def split_assignments(simple: str) -> tuple[str, str]:
    """`A=1 B=$X cmd args` as ('A=1 B=$X ', 'cmd args'), the text kept as written."""
    match = re.match(r"""^\s*((?:[A-Za-z_]\w*=(?:'[^']*'|"[^"]*"|[^\s'"])*\s+)*)(.*)$""", simple, re.S)
    assert match is not None  # the pattern matches any text
    return match[1], match[2]


def quick_form(simple: str) -> QuickForm | None:
    """The table's entry for one simple command (None: it runs as written)."""
    _, argv = words(simple)
    return next((form for form in QUICK_FORMS if argv and form.applies(argv)), None)


def repeat_key(simple: str) -> tuple[str, ...] | None:
    """What makes a training command the same run as another (None: not a training run)."""
    _, argv = words(simple)
    if not _is_training(argv):
        return None
    launcher = "torchrun" if argv[0] == "torchrun" else "python"
    key = [launcher]
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in ("--config", "--set") and i + 1 < len(argv):
            value = argv[i + 1]
            if word == "--config" or value.partition("=")[0].strip() not in BOOKKEEPING:
                key.append(f"{word} {value}")
            i += 2
            continue
        if word == "--resume":
            key.append(word)
        i += 1
    return (key[0], *sorted(key[1:]))


def as_argcheck(simple: str) -> str:
    return _argcheck(simple)
