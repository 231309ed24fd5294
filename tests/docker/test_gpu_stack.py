"""The GPU image's CUDA, cuDNN and Python against the pinned onnxruntime-gpu wheel (scripts/gpu_stack.py):
a CUDA provider built for another CUDA major than the image's cannot load, and the service would
quietly serve on CPU. No GPU is needed: the wheel's shared libraries say what they link against."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import onnxruntime
import pytest

from scripts import gpu_stack

REPO = Path(__file__).resolve().parents[2]
RECORD = json.loads(gpu_stack.RECORD.read_text())
DOCKERFILE = gpu_stack.DOCKERFILE.read_text()
PYPROJECT = gpu_stack.PYPROJECT.read_text()


def test_the_image_the_pin_and_the_wheel_agree() -> None:
    assert gpu_stack.disagreements(DOCKERFILE, PYPROJECT, RECORD) == []
    assert RECORD["cuda_major"] == 13 and RECORD["cudnn_major"] == 9 and RECORD["python"] == "3.12"
    assert "libcudart.so.13" in RECORD["needed"][gpu_stack.PROVIDER_LIBRARY]


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (("cuda:13.0.2-cudnn", "cuda:12.6.3-cudnn"), "is CUDA 12, onnxruntime-gpu 1.31.1's CUDA"),
        (("-cudnn-runtime-", "-runtime-"), "has no cuDNN; the CUDA provider needs cuDNN 9"),
        (("-cudnn-runtime-", "-cudnn8-runtime-"), "has cuDNN 8, the CUDA provider needs cuDNN 9"),
        (("ubuntu24.04", "ubuntu22.04"), "python3 is 3.10, the recorded wheel is for Python 3.12"),
    ],
)
def test_an_image_that_cannot_load_the_provider_is_named(change: tuple[str, str], said: str) -> None:
    found = gpu_stack.disagreements(DOCKERFILE.replace(*change), PYPROJECT, RECORD)
    assert len(found) == 1 and said in found[0], found


def test_a_pin_the_record_does_not_describe_is_named() -> None:
    for pyproject in (
        PYPROJECT.replace('"onnxruntime-gpu==1.31.1"', '"onnxruntime-gpu==1.32.0"'),
        PYPROJECT.replace('"onnxruntime-gpu==1.31.1"', '"onnxruntime-gpu>=1.17"'),  # drifts: refused
    ):
        (found,) = gpu_stack.disagreements(DOCKERFILE, pyproject, RECORD)
        assert "the record describes 1.31.1" in found


def test_the_check_command_passes_on_this_tree() -> None:
    ok = subprocess.run([sys.executable, "scripts/gpu_stack.py", "--check"], cwd=REPO, capture_output=True)
    assert ok.returncode == 0, ok.stderr


def test_needed_entries_are_read_as_readelf_reads_them(tmp_path: Path) -> None:
    """On a real shared library of a real wheel's layout: ONNX Runtime's own (the CPU build here)."""
    capi = Path(onnxruntime.__file__).parent / "capi"
    library = next(capi.glob("onnxruntime_pybind11_state*.so"))
    wheel = tmp_path / "onnxruntime_gpu-0.0.0-cp312-cp312-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(library, f"onnxruntime/capi/{library.name}")
        archive.writestr("onnxruntime/__init__.py", "")
    needed = gpu_stack.wheel_libraries(wheel)[library.name]
    assert "libc.so.6" in needed
    if shutil.which("readelf"):
        dynamic = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True, check=True)
        lines = dynamic.stdout.splitlines()
        listed = [line.split("[", 1)[1].rstrip("]") for line in lines if "(NEEDED)" in line]
        assert needed == listed
    with pytest.raises(ValueError, match=r"no libonnxruntime_providers_cuda\.so: not a CUDA build"):
        gpu_stack.describe(wheel)


def test_the_record_is_what_the_pinned_wheel_says() -> None:
    """Re-read from the wheel where scripts/gpu/prepare.sh left it (about a second); else the
    record's sha256 must be the one PyPI publishes for that file, so that the record (written from
    the wheel by scripts/gpu_stack.py --write) describes the wheel pip installs."""
    wheel = REPO / ".gpu-wheels" / RECORD["wheel"]
    if wheel.exists():
        assert gpu_stack.describe(wheel) == RECORD
        return
    # PyPI's simple index in its JSON form (PEP 691): what pip reads, hashes included.
    request = urllib.request.Request(
        f"https://pypi.org/simple/{RECORD['package']}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as answer:
            files = json.load(answer)["files"]
    except (OSError, ValueError) as e:  # unreachable, or not PEP 691 JSON (a proxy's page)
        why = f"neither the wheel (.gpu-wheels/, scripts/gpu/prepare.sh) nor PyPI ({e}) is at hand"
        pytest.skip(reason=why)
    published = {f["filename"]: f["hashes"].get("sha256") for f in files}
    assert published.get(RECORD["wheel"]) == RECORD["sha256"]


def test_the_host_requirements_are_written_where_operators_look() -> None:
    """The driver a CUDA major needs, in the compose override and the operations guide."""
    for text in (
        (REPO / "docker-compose.gpu.yml").read_text(),
        (REPO / "docs" / "operations.md").read_text(),
    ):
        assert f"CUDA {RECORD['cuda_major']}" in text
        assert RECORD["minimum_driver"] in text and "NVIDIA Container Toolkit" in text
        assert f"onnxruntime-gpu {RECORD['version']}" in text
