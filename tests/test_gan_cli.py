"""The console scripts where their extra is not installed: one line naming the extra and how to
install it, exit 2, no traceback; any other missing module keeps its traceback. Each script is run
as its pyproject.toml entry point, in a real interpreter, with modules made unimportable by a
sitecustomize.py (sys.modules[name] = None, as for a package that is not there), or with no
site-packages at all (python -S: only the standard library and this checkout)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import gan_cli

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]
BLOCKER = """\
import os, sys
for name in os.environ.get("GAN_TEST_BLOCK", "").split(","):
    if name:
        sys.modules[name] = None  # `import name` now raises ModuleNotFoundError
"""
# What the serve-only venv (`make serve`) lacks of the other extras.
NOT_IN_SERVE = ("torch", "sklearn", "skimage", "scipy", "matplotlib", "tqdm", "onnx", "onnxscript", "httpx")


def run_script(
    script: str, args: list[str], tmp_path: Path, blocked: tuple[str, ...] = (), *, bare: bool = False
) -> subprocess.CompletedProcess[str]:
    """The script's entry point as pyproject.toml declares it, run from the checkout."""
    module, function = SCRIPTS[script].split(":")
    code = f"import sys; sys.argv[0] = {script!r}; from {module} import {function} as f; sys.exit(f())"
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "GAN_TEST_BLOCK": ",".join(blocked)}
    flags = ["-S"] if bare else []
    return subprocess.run(
        [sys.executable, *flags, "-c", code, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_needs(out: subprocess.CompletedProcess[str], script: str, missing: str, extras: str) -> None:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [
        f"{script}: no module named '{missing}': needs the {extras} ({gan_cli.PROGRAMS[script].what}): "
        f"{gan_cli.PROGRAMS[script].install}"
    ]
    assert "pip install -e '.[" in out.stderr


@pytest.mark.parametrize(
    ("script", "missing", "extras"),
    [
        ("gan-train", "torch", "'train' extra"),
        ("gan-export", "torch", "'train' and 'export' extras"),
        ("gan-export", "onnx", "'train' and 'export' extras"),
        ("gan-serve", "fastapi", "'serve' extra"),
        ("gan-serve", "uvicorn", "'serve' extra"),
        ("gan-serve", "onnxruntime", "'serve' extra"),
        ("gan-client", "httpx", "'client' extra"),
        ("gan-client", "tqdm", "'client' extra"),
    ],
)
def test_a_script_without_its_extra_says_which_in_one_line(
    tmp_path: Path, script: str, missing: str, extras: str
) -> None:
    # --help: were the module not missing after all, the script would print its help and exit 0.
    assert_needs(run_script(script, ["--help"], tmp_path, (missing,)), script, missing, extras)


def test_in_the_serve_only_venv_gan_serve_runs_and_the_others_say_what_they_need(tmp_path: Path) -> None:
    assert run_script("gan-serve", ["--help"], tmp_path, NOT_IN_SERVE).returncode == 0
    expected = {"gan-train": "torch", "gan-export": "onnx", "gan-client": "httpx"}
    for script, missing in expected.items():
        out = run_script(script, ["--help"], tmp_path, NOT_IN_SERVE)
        extras = gan_cli.PROGRAMS[script].extras
        names = " and ".join(f"'{e}'" for e in extras) + (" extras" if len(extras) > 1 else " extra")
        assert_needs(out, script, missing, names)


def test_with_no_extra_at_all_every_script_says_what_it_needs(tmp_path: Path) -> None:
    """python -S: not even site-packages, so the helper itself needs nothing but the standard
    library."""
    for script in SCRIPTS:
        out = run_script(script, ["--help"], tmp_path, bare=True)
        assert out.returncode == 2, out.stderr
        assert len(out.stderr.splitlines()) == 1 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.startswith(f"{script}: no module named ") and "extra" in out.stderr


def test_an_import_made_only_when_needed_says_the_same(tmp_path: Path) -> None:
    """matplotlib is imported when the first plot is drawn, well inside main()."""
    out = run_script(
        "gan-train",
        ["--config", "configs/ring8.toml", "--dry-run", "--out", str(tmp_path / "run")],
        tmp_path,
        ("matplotlib",),
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    last = out.stderr.splitlines()[-1]
    assert last.startswith("gan-train: no module named 'matplotlib': needs the 'train'"), out.stderr


@pytest.mark.parametrize(
    ("script", "blocked"),
    [
        ("gan-client", "client.api"),  # one of ours: a bug, not a missing extra
        ("gan-serve", "starlette"),  # a dependency of fastapi: a broken install
        ("gan-serve", "PIL.Image"),  # pillow is there, but not all of it
    ],
)
def test_any_other_missing_module_keeps_its_traceback(tmp_path: Path, script: str, blocked: str) -> None:
    out = run_script(script, ["--help"], tmp_path, (blocked,))
    assert out.returncode == 1
    assert "Traceback" in out.stderr and f"ModuleNotFoundError: import of {blocked} halted" in out.stderr
    assert "needs the" not in out.stderr


def test_every_script_goes_through_the_helper() -> None:
    assert {name: value.split(":")[0] for name, value in SCRIPTS.items()} == dict.fromkeys(
        gan_cli.PROGRAMS, "gan_cli"
    )
    for name, value in SCRIPTS.items():
        assert getattr(gan_cli, value.split(":")[1])  # the function exists
        extras = gan_cli.PROGRAMS[name].extras
        assert f"pip install -e '.[{','.join(extras)}]'" in gan_cli.PROGRAMS[name].install


def brought_by(requirement: Requirement) -> set[str]:
    """The distributions the extras of a requirement bring (uvicorn[standard]: httptools, ...)."""
    names: set[str] = set()
    for line in importlib.metadata.requires(requirement.name) or []:
        dependency = Requirement(line)
        marker = dependency.marker
        if marker is not None and any(marker.evaluate({"extra": e}) for e in requirement.extras):
            names.add(canonicalize_name(dependency.name))
    return names


def test_the_extras_modules_are_those_of_pyproject() -> None:
    """Each module of an extra belongs to one of its distributions (or to what they bring with
    them, as uvicorn[standard] brings httptools), and each distribution has a module there: the
    test venv has every extra but gpu installed, so its metadata can tell."""
    owners = importlib.metadata.packages_distributions()
    for extra, modules in gan_cli.EXTRAS.items():
        requirements = [Requirement(line) for line in PYPROJECT["project"]["optional-dependencies"][extra]]
        direct = {canonicalize_name(r.name) for r in requirements}
        allowed = direct.union(*(brought_by(r) for r in requirements))
        provided = {module: {canonicalize_name(d) for d in owners.get(module, [])} for module in modules}
        for module, distributions in provided.items():
            assert distributions & allowed, f"{extra}: {module} is not from its distributions"
        for name in direct:
            assert any(name in d for d in provided.values()), f"{extra}: no module of {name} is listed"


def test_the_torch_pin_is_the_train_extras() -> None:
    assert gan_cli.TORCH in PYPROJECT["project"]["optional-dependencies"]["train"]
