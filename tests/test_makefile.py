"""The Makefile's venv stamps: a venv that already has the project and the extras (installed by
hand, as the README says) gets its stamp without pip running; scripts/extras_installed.py tells,
naming what is missing. The script is run against the test's own venv, which has every extra but
gpu; make runs against a stand-in venv whose python is this one behind a wrapper that records
each command and never runs pip (the real venv must not change)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "extras_installed.py"
DEV_EXTRAS = ["train", "export", "serve", "client", "dev"]


def check(*args: str, python: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(python or [sys.executable]), str(SCRIPT), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_test_venv_has_the_extras_make_installs() -> None:
    out = check(*DEV_EXTRAS)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""


def test_an_extra_that_is_not_installed_is_named() -> None:
    out = check("serve", "gpu")  # onnxruntime-gpu is not here (the test venv has onnxruntime)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        "extras_installed: onnxruntime-gpu==1.31.1 (for the gpu extra): not installed"
    ]


@pytest.mark.parametrize(
    ("requirement", "problem"),
    [
        ("no-such-distribution-xyz>=1", "not installed"),
        ("numpy>=999", "is installed"),
    ],
)
def test_an_unsatisfied_requirement_is_named(tmp_path: Path, requirement: str, problem: str) -> None:
    text = (REPO / "pyproject.toml").read_text()
    assert text.count("\ntrain = [\n") == 1
    (tmp_path / "pyproject.toml").write_text(
        text.replace("\ntrain = [\n", f'\ntrain = [\n    "{requirement}",\n')
    )
    out = check("--pyproject", str(tmp_path / "pyproject.toml"), "train")
    assert out.returncode == 1
    named = [line for line in out.stderr.splitlines() if line.startswith(f"extras_installed: {requirement} ")]
    assert len(named) == 1 and named[0].endswith(problem), out.stderr
    # This checkout, not that copy, is what is installed: said too, so pip would run.
    assert f"not installed in editable mode from {tmp_path}" in out.stderr


def test_a_bare_venv_has_not_even_packaging() -> None:
    out = check("serve", python=[sys.executable, "-S"])  # no site-packages, as in a new venv
    assert out.returncode == 1
    assert out.stderr.endswith("packaging is not installed\n")


def test_an_unknown_extra_is_a_usage_error() -> None:
    assert check("no-such-extra").returncode == 2


def stand_in_venv(tmp_path: Path, check_fails: bool = False) -> tuple[Path, Path]:
    """A venv for make whose python is this one, recording what it runs; pip does nothing."""
    venv, log = tmp_path / "venv", tmp_path / "commands.log"
    (venv / "bin").mkdir(parents=True)
    wrapper = venv / "bin" / "python"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {shlex.quote(str(log))}\n'
        'if [ "$1 $2" = "-m pip" ]; then exit 0; fi\n'
        + ('case "$1" in *extras_installed.py) exit 1;; esac\n' if check_fails else "")
        + f'exec {shlex.quote(sys.executable)} "$@"\n'
    )
    wrapper.chmod(0o755)
    return venv, log


def make(*args: str) -> subprocess.CompletedProcess[str]:
    # MAKEFLAGS from an outer make (make test) would change what this one does.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_venv_that_has_the_extras_gets_its_stamp_without_pip(tmp_path: Path) -> None:
    venv, log = stand_in_venv(tmp_path)
    stamp = venv / ".installed-train-dev"
    out = make(f"VENV={venv}", str(stamp))
    assert out.returncode == 0, out.stdout + out.stderr
    assert stamp.exists()
    assert log.read_text().splitlines() == [f"scripts/extras_installed.py {' '.join(DEV_EXTRAS)}"]
    # And the serve venv the same way.
    serve_stamp = venv / ".installed-serve"
    out = make(f"SERVE_VENV={venv}", str(serve_stamp))
    assert out.returncode == 0, out.stdout + out.stderr
    assert serve_stamp.exists()
    assert log.read_text().splitlines()[-1] == "scripts/extras_installed.py serve"


def test_a_venv_without_them_gets_pip_as_before(tmp_path: Path) -> None:
    venv, log = stand_in_venv(tmp_path, check_fails=True)
    stamp = venv / ".installed-train-dev"
    out = make(f"VENV={venv}", str(stamp))
    assert out.returncode == 0, out.stdout + out.stderr
    assert stamp.exists()
    assert log.read_text().splitlines() == [
        f"scripts/extras_installed.py {' '.join(DEV_EXTRAS)}",
        "-m pip install --upgrade pip",
        "-m pip install torch==2.13.0",
        "-m pip install -e .[train,export,serve,client,dev]",
    ]
