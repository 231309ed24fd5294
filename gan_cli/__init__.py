"""The console scripts' entry points: gan-train, gan-export, gan-serve and gan-client start here.

pip installs every script of a package whatever extras were asked for, so the serve-only venv has
gan-train too. Run where its extra is missing, a script says so in one line (which extra, how to
install it) and exits 2, instead of ending in a ModuleNotFoundError's traceback. It is one module
of its own, standard library only, that imports each program only when it runs: nothing imports it,
so it adds no dependency between the packages (client never imports service or training, nor
they it), and it cannot itself need a missing extra.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass

# The pin of the train extra in pyproject.toml: torch is installed first, on its own, so that pip
# never picks a newer CUDA build (see the Makefile). tests/test_gan_cli.py keeps the two equal.
TORCH = "torch==2.13.0"

# The modules each extra's distributions provide (pillow is PIL, and so on: a distribution that is
# missing has no metadata to say so). uvicorn[standard] brings httptools, which the service's
# connection guard subclasses, and uvloop. tests/test_gan_cli.py checks this against pyproject.toml.
EXTRAS: dict[str, frozenset[str]] = {
    "train": frozenset({"torch", "numpy", "PIL", "sklearn", "skimage", "scipy", "matplotlib", "tqdm"}),
    "export": frozenset({"onnx", "onnxscript", "onnxruntime", "jsonschema"}),
    "serve": frozenset(
        {
            "fastapi",
            "uvicorn",
            "httptools",
            "uvloop",
            "pydantic",
            "pydantic_settings",
            "onnxruntime",
            "prometheus_client",
            "PIL",
            "numpy",
            "multipart",
            "python_multipart",
            "jsonschema",
        }
    ),
    "client": frozenset({"httpx", "tqdm"}),
}


@dataclass(frozen=True)
class Program:
    module: str  # its main() is the program
    extras: tuple[str, ...]
    what: str  # the extras' main packages, in words
    install: str  # the command, run in the checkout


PROGRAMS = {
    "gan-train": Program(
        "training.cli", ("train",), "torch and friends", f"pip install {TORCH} && pip install -e '.[train]'"
    ),
    "gan-export": Program(
        "model_export.cli",
        ("train", "export"),
        "torch and ONNX",
        f"pip install {TORCH} && pip install -e '.[train,export]'",
    ),
    "gan-serve": Program(
        "service.cli",
        ("serve",),
        "FastAPI, uvicorn, ONNX Runtime",
        "pip install -e '.[serve]' (or '.[gpu]' for CUDA)",
    ),
    "gan-client": Program("client.cli", ("client",), "httpx, tqdm", "pip install -e '.[client]'"),
}


def missing_extra_module(error: ModuleNotFoundError, extras: tuple[str, ...]) -> str | None:
    """The module of one of `extras` whose absence `error` reports, or None when it reports
    something else: one of ours (a bug), a dependency of a dependency, or a package that is
    installed but broken (a submodule missing), each of which keeps its traceback."""
    top = (error.name or "").partition(".")[0]
    if not any(top in EXTRAS[extra] for extra in extras):
        return None
    with contextlib.suppress(ImportError, ValueError):  # found but unusable: not "not installed"
        if importlib.util.find_spec(top) is None:
            return top
    return None


def run(script: str) -> int | None:
    """Runs the script's program: its main()'s exit status, or 2 when an extra it needs is not
    installed (also found by an import main() makes later, as some are made only when needed)."""
    program = PROGRAMS[script]
    try:
        main: Callable[[], int | None] = importlib.import_module(program.module).main
        return main()
    except ModuleNotFoundError as e:
        missing = missing_extra_module(e, program.extras)
        if missing is None:
            raise
        names = " and ".join(f"'{extra}'" for extra in program.extras)
        noun = "extras" if len(program.extras) > 1 else "extra"
        print(
            f"{script}: no module named '{missing}': needs the {names} {noun} ({program.what}): "
            f"{program.install}",
            file=sys.stderr,
        )
        return 2


def train() -> int | None:
    return run("gan-train")


def export() -> int | None:
    return run("gan-export")


def serve() -> int | None:
    return run("gan-serve")


def client() -> int | None:
    return run("gan-client")
