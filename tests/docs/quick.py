"""QUICK_FORMS: the one table of what the documentation test runs in place of a command as written.

Everything else in a shell block runs exactly as written (with the ports of the servers the
harness starts: see servers.py). A quick form keeps the command's own arguments (config, --set,
--out, paths) and changes only what makes it long, and every test report lists the forms used:

- rewrite: the command runs with a change (`make -n`, a smaller `--n`, `--fail-with-body`);
- args: the program parses its arguments (and a training recipe's config and --set values) and
  stops, without running: tests/docs/argcheck.py;
- skip: not run at all; the reason names what covers it instead;
- train: a training command (gan-train, python -m training, torchrun, gan-train compare) runs as
  a dry run when a later command of the same file reads its run directory, and is `args`
  otherwise, as is a `--resume` (its directory is there already; argcheck.py checks that it has
  checkpoints to resume from). GAN_DOCS_DRY_RUN_ALL=1: a dry run always. A dry run takes 5 to
  30 s on 2 cores, so all of the docs' twenty would take minutes of the suite's time; what they
  would add is covered by tests/training (every recipe's dry run, folders, resume, DDP, compare).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.docs.shell import words

ARGCHECK = f"{sys.executable} {Path(__file__).with_name('argcheck.py')}"
MAX_GENERATE_N = 1000
DRY_RUN_ALL = "GAN_DOCS_DRY_RUN_ALL"


@dataclass(frozen=True)
class QuickForm:
    name: str
    applies: Callable[[list[str]], bool]
    action: str  # "rewrite", "args", "skip" or "train"
    why: str
    rewrite: Callable[[str], str] | None = None


def _is_training(argv: list[str]) -> bool:
    """gan-train (train or compare), python -m training, or torchrun ... -m training."""
    if argv[:2] == ["gan-train", "compare"]:
        return True
    if argv[:1] == ["gan-train"]:
        return "--config" in argv and (len(argv) < 2 or argv[1] not in ("eval", "seeds"))
    if argv[:3] in (["python", "-m", "training"], ["python3", "-m", "training"]):
        return "--config" in argv
    return argv[:1] == ["torchrun"] and "training" in argv and "--config" in argv


def _append(flag: str) -> Callable[[str], str]:
    def rewrite(simple: str) -> str:
        if flag in words(simple)[1]:
            return simple
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
        "training",
        _is_training,
        "train",
        "training takes minutes to an hour: a run whose directory a later command of this file "
        "reads runs as a dry run (--dry-run, the documented quick form: 3 steps through every code "
        "path), any other has its arguments and recipe checked (tests/docs/quick.py says why)",
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


def run_directory(simple: str) -> str | None:
    """The directory a training command writes (its --out, else the default), as written."""
    _, argv = words(simple)
    if not _is_training(argv):
        return None
    for i, word in enumerate(argv):
        if word == "--out" and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith("--out="):
            return word.split("=", 1)[1]
    if argv[:2] == ["gan-train", "compare"]:
        return "runs/compare"
    config = argv[argv.index("--config") + 1] if "--config" in argv[:-1] else ""
    return f"runs/{Path(config).stem}"


def reads(code: str, directory: str) -> bool:
    """Whether a command names `directory` as a path of its own (runs/ring8, not runs/ring8-s1)."""
    return re.search(rf"(?<![\w./-]){re.escape(directory.rstrip('/'))}(?![\w.-])", code) is not None


def as_argcheck(simple: str) -> str:
    return _argcheck(simple)
