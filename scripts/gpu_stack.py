"""The GPU image's stack, checked without a GPU: which CUDA and cuDNN the pinned onnxruntime-gpu wheel
was built for, read from the wheel itself, against the CUDA base image and the Python of
docker/Dockerfile.gpu.

A CUDA provider library that needs `libcudart.so.13` cannot load on a CUDA 12 image: ONNX Runtime
then falls back to the CPU and the service serves, slowly, on the wrong device. The shared
libraries' `DT_NEEDED` entries (read with pyelftools, as `readelf -d` shows them) name the CUDA
major; the wheel's `cudnn` extra names the cuDNN major; its tag names the Python. Reading a 255 MB
wheel takes seconds, so the result is recorded in docker/gpu-stack.json with the wheel's sha256,
and the suite compares the image against that record (tests/docker/test_gpu_stack.py), re-reading
the wheel where one is at hand.

    python scripts/gpu_stack.py .gpu-wheels/onnxruntime_gpu-1.31.1-cp312-*.whl --write
    python scripts/gpu_stack.py --check      # the image, the pin and the record agree (exit 1 if not)
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from model_repository.manifest import sha256_file

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "docker" / "gpu-stack.json"
DOCKERFILE = ROOT / "docker" / "Dockerfile.gpu"
PYPROJECT = ROOT / "pyproject.toml"
PROVIDER_LIBRARY = "libonnxruntime_providers_cuda.so"
# The oldest Linux driver each CUDA major runs on (NVIDIA's CUDA toolkit release notes, table 3:
# the driver that shipped with the major's first release).
MINIMUM_DRIVER = {12: "525.60.13", 13: "580.65.06"}
# The python3 of each Ubuntu release NVIDIA's CUDA images are based on.
UBUNTU_PYTHON = {"20.04": "3.8", "22.04": "3.10", "24.04": "3.12"}


def needed_of(library: Path) -> list[str]:
    """The DT_NEEDED entries of one shared library, in order (as `readelf -d` lists them)."""
    with library.open("rb") as f:
        elf = ELFFile(f)
        return [
            tag.needed
            for section in elf.iter_sections()
            if isinstance(section, DynamicSection)
            for tag in section.iter_tags()
            if tag.entry.d_tag == "DT_NEEDED"
        ]


def wheel_libraries(wheel: Path) -> dict[str, list[str]]:
    """Each shared library in a wheel -> its DT_NEEDED entries. Members are unpacked one at a time
    into a scratch file: pyelftools seeks, and a zip member can only be read forward."""
    found: dict[str, list[str]] = {}
    with zipfile.ZipFile(wheel) as archive, tempfile.TemporaryDirectory() as scratch:
        for member in archive.namelist():
            name = member.rsplit("/", 1)[-1]
            if not re.search(r"\.so(\.|$)", name):
                continue
            target = Path(scratch) / name
            with archive.open(member) as source, target.open("wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
            found[name] = needed_of(target)
            target.unlink()
    return found


def majors(needed: list[str], library: str) -> set[int]:
    """The major versions of `library` (e.g. libcudart) among DT_NEEDED entries."""
    return {int(m.group(1)) for n in needed if (m := re.fullmatch(rf"{re.escape(library)}\.so\.(\d+)", n))}


def describe(wheel: Path) -> dict[str, Any]:
    """What the record says of one onnxruntime-gpu wheel."""
    parts = wheel.name[: -len(".whl")].split("-")  # name, version, python tag, abi tag, platform
    if len(parts) != 5 or parts[0] != "onnxruntime_gpu":
        raise ValueError(f"{wheel.name}: not an onnxruntime-gpu wheel file name")
    libraries = wheel_libraries(wheel)
    if PROVIDER_LIBRARY not in libraries:
        raise ValueError(f"{wheel.name} has no {PROVIDER_LIBRARY}: not a CUDA build")
    cuda = majors(libraries[PROVIDER_LIBRARY], "libcudart")
    if len(cuda) != 1:
        raise ValueError(f"{PROVIDER_LIBRARY} needs libcudart majors {sorted(cuda)}; expected one")
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(
            archive.read(n).decode() for n in archive.namelist() if n.endswith(".dist-info/METADATA")
        )
    # cuDNN is opened at run time (dlopen), so it is not among DT_NEEDED; the wheel's own extra
    # says which it was built for: Requires-Dist: nvidia-cudnn-cu13~=9.0; extra == "cudnn".
    cudnn = re.search(r"^Requires-Dist: nvidia-cudnn-cu\d+~=(\d+)", metadata, re.MULTILINE)
    tag = parts[2]
    cuda_major = cuda.pop()
    return {
        "package": "onnxruntime-gpu",
        "version": parts[1],
        "wheel": wheel.name,
        "sha256": sha256_file(wheel),
        "python": f"{tag[2]}.{tag[3:]}",
        "platform": parts[4],
        "cuda_major": cuda_major,
        "cudnn_major": int(cudnn.group(1)) if cudnn else None,
        "minimum_driver": MINIMUM_DRIVER.get(cuda_major),
        "needed": libraries,
    }


def image_of(dockerfile: str) -> dict[str, Any]:
    """The CUDA base image named by Dockerfile.gpu's CUDA_IMAGE argument, taken apart."""
    arg = re.search(r"^ARG CUDA_IMAGE=(\S+)", dockerfile, re.MULTILINE)
    if not arg:
        raise ValueError("Dockerfile.gpu names no ARG CUDA_IMAGE")
    tag = re.fullmatch(
        r"nvidia/cuda:(\d+)\.(\d+)\.(\d+)-(cudnn(\d*)-)?runtime-ubuntu(\d+\.\d+)", arg.group(1)
    )
    if not tag:
        raise ValueError(f"{arg.group(1)}: not an nvidia/cuda:X.Y.Z-cudnn-runtime-ubuntuNN.NN image")
    return {
        "image": arg.group(1),
        "cuda_major": int(tag.group(1)),
        "cudnn": bool(tag.group(4)),
        # A CUDA 12.x tag may name the cuDNN major (cudnn8, cudnn9); CUDA 13 tags say "cudnn" (9).
        "cudnn_major": int(tag.group(5)) if tag.group(5) else None,
        "python": UBUNTU_PYTHON.get(tag.group(6)),
    }


def pinned_version(pyproject: str) -> str | None:
    """The exact onnxruntime-gpu version the gpu extra pins (None unless pinned with ==)."""
    pin = re.search(r'"onnxruntime-gpu==([^"]+)"', pyproject)
    return pin.group(1) if pin else None


def disagreements(dockerfile: str, pyproject: str, record: dict[str, Any]) -> list[str]:
    """Every way the image, the pin and the record of the pinned wheel disagree (empty: none)."""
    image = image_of(dockerfile)
    found = []
    pin = pinned_version(pyproject)
    if pin != record["version"]:
        found.append(
            f"the gpu extra pins onnxruntime-gpu {pin or '(no exact version)'}, the record describes "
            f"{record['version']}: run scripts/gpu_stack.py on the pinned wheel with --write"
        )
    if image["cuda_major"] != record["cuda_major"]:
        found.append(
            f"{image['image']} is CUDA {image['cuda_major']}, onnxruntime-gpu {record['version']}'s CUDA "
            f"provider needs CUDA {record['cuda_major']} "
            f"({', '.join(record['needed'][PROVIDER_LIBRARY][:5])})"
        )
    if record["cudnn_major"] is not None and not image["cudnn"]:
        found.append(f"{image['image']} has no cuDNN; the CUDA provider needs cuDNN {record['cudnn_major']}")
    elif image["cudnn_major"] not in (None, record["cudnn_major"]):
        found.append(
            f"{image['image']} has cuDNN {image['cudnn_major']}, "
            f"the CUDA provider needs cuDNN {record['cudnn_major']}"
        )
    if image["python"] != record["python"]:
        found.append(
            f"{image['image']}'s python3 is {image['python']}, "
            f"the recorded wheel is for Python {record['python']}"
        )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", nargs="?", type=Path, help="an onnxruntime-gpu wheel to read")
    parser.add_argument("--write", action="store_true", help=f"write what the wheel says to {RECORD}")
    parser.add_argument("--check", action="store_true", help="check the image and the pin against the record")
    args = parser.parse_args(argv)
    if args.wheel:
        described = describe(args.wheel)
        text = json.dumps(described, indent=2) + "\n"
        if args.write:
            RECORD.write_text(text)
        else:
            sys.stdout.write(text)
    if args.check or not args.wheel:
        found = disagreements(DOCKERFILE.read_text(), PYPROJECT.read_text(), json.loads(RECORD.read_text()))
        for line in found:
            print(f"gpu stack: {line}", file=sys.stderr)
        return 1 if found else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
