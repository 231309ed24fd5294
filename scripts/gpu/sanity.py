"""check.sh's sanity step: before any test or benchmark, is the onnxruntime that Python imports the
one meant, does a graph run on the provider meant, and does the service's stack import?

    sanity.py check --provider cuda|cpu [--site DIR]
    sanity.py libdirs      the nvidia-* pip packages' library folders, ':'-joined (for LD_LIBRARY_PATH)

On the device (--provider cuda) onnxruntime-gpu is installed into --site, which PYTHONPATH puts
before the image's CPU onnxruntime: it must be the one imported and list CUDAExecutionProvider.
`onnxruntime.preload_dlls()` loads the CUDA and cuDNN libraries of the nvidia-* pip packages
(nothing else puts them on the loader's path); then a small convolution (cuDNN) must run on a
session whose provider is CUDA, so a CUDA provider that cannot load fails here rather than quietly
running on the CPU. Prints what it finds; exit 1 with a line starting FAILED on the first thing that is wrong.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as metadata
import sys
import time
from pathlib import Path
from typing import Any

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# The serve extra's imports (module, distribution): all must import where the service runs.
STACK = [
    ("fastapi", "fastapi"),
    ("starlette", "starlette"),
    ("pydantic", "pydantic"),
    ("pydantic_core", "pydantic-core"),
    ("pydantic_settings", "pydantic-settings"),
    ("uvicorn", "uvicorn"),
    ("httptools", "httptools"),
    ("uvloop", "uvloop"),
    ("websockets", "websockets"),
    ("watchfiles", "watchfiles"),
    ("python_multipart", "python-multipart"),
    ("jsonschema", "jsonschema"),
    ("dotenv", "python-dotenv"),
    ("prometheus_client", "prometheus-client"),
    ("PIL", "pillow"),
    ("numpy", "numpy"),
]


class Failed(Exception):
    pass


def libdirs() -> list[str]:
    found: list[str] = []
    for entry in sys.path:
        base = Path(entry or ".", "nvidia")
        if not base.is_dir():
            continue
        for lib in sorted(base.glob("*/lib")):
            if any(lib.glob("*.so*")) and str(lib) not in found:
                found.append(str(lib))
    return found


def conv_model() -> bytes:
    """A 3x3 convolution (cuDNN on CUDA), opset 17: every ONNX Runtime this project allows runs it."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 3, 3, 3), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [node],
        "sanity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 32, 32])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return bytes(model.SerializeToString())


def run_conv(ort: Any, model: bytes, provider: str) -> Any:
    # A CUDA provider that cannot load its libraries is dropped from the session with a logged
    # error only, and the graph runs on the CPU: the session's first provider says which it got.
    try:
        session = ort.InferenceSession(model, providers=[provider])
    except Exception as error:
        raise Failed(f"no session on {provider}: {error}") from error
    got = session.get_providers()[0]
    if got != provider:
        raise Failed(
            f"a session asked for {provider} got {got} "
            "(ONNX Runtime's log above names the library that did not load)"
        )
    import numpy as np

    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32), np.float32)
    session.run(None, {"x": x})  # the first run loads the kernels (cuDNN's too)
    start = time.perf_counter()
    (y,) = session.run(None, {"x": x})
    print(f"conv on {provider}: {1000 * (time.perf_counter() - start):.2f} ms (second run)")
    return y


def check_requirements(site: Path) -> list[str]:
    """The carried wheels' requirements, checked against what this Python has (the image's
    packages, which were not carried): a too-old one is named here rather than as an ImportError."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return ["packaging is missing: requirements not checked"]
    warnings: list[str] = []
    for dist in metadata.distributions(path=[str(site)]):
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            try:
                have = metadata.version(requirement.name)
            except metadata.PackageNotFoundError:
                warnings.append(f"{dist.metadata['Name']} needs {requirement}: not installed")
                continue
            if requirement.specifier and not requirement.specifier.contains(have, prereleases=True):
                warnings.append(
                    f"{dist.metadata['Name']} needs {requirement}: {requirement.name} {have} here"
                )
    return warnings


def check(provider: str, site: Path | None) -> None:
    print(f"python {sys.version.split()[0]} at {sys.executable}")
    import onnxruntime as ort

    where = Path(ort.__file__).resolve().parent
    available = ort.get_available_providers()
    print(f"onnxruntime {ort.__version__} at {where}; providers: {', '.join(available)}")
    wanted = CUDA if provider == "cuda" else CPU
    if site is not None and not where.is_relative_to(site.resolve()):
        raise Failed(
            f"onnxruntime was imported from {where}, not from {site}: is {site} first on PYTHONPATH?"
        )
    if wanted not in available:
        raise Failed(f"onnxruntime {ort.__version__} at {where} lists no {wanted}")
    if provider == "cuda":
        preload = getattr(ort, "preload_dlls", None)
        if preload is None:
            raise Failed(f"onnxruntime {ort.__version__} has no preload_dlls (it came in 1.21)")
        preload()
        print("onnxruntime.preload_dlls(): done")
        debug = getattr(ort, "print_debug_info", None)
        if debug is not None:
            debug()  # versions and locations of the CUDA/cuDNN packages, and the libraries loaded
    print(f"nvidia library folders on sys.path: {':'.join(libdirs()) or 'none'}")

    model = conv_model()
    y = run_conv(ort, model, wanted)
    if provider == "cuda":
        import numpy as np

        reference = run_conv(ort, model, CPU)
        error = float(np.max(np.abs(y - reference)))
        print(f"CUDA vs CPU: max abs difference {error:.2e}")
        if error > 1e-2:
            raise Failed(f"the convolution on CUDA differs from the CPU's by {error}")

    missing = []
    for module, dist in STACK:
        try:
            importlib.import_module(module)
            print(f"  {dist} {metadata.version(dist)}")
        except Exception as error:  # an ImportError, or a module that breaks on import
            missing.append(f"{module} ({type(error).__name__}: {error})")
    if missing:
        raise Failed(f"the service's stack does not import: {'; '.join(missing)}")
    importlib.import_module("service.served.runtime")  # the service's ONNX Runtime layer, as it loads models
    print("service.served.runtime imports")
    if site is not None:
        for warning in check_requirements(site):
            print(f"WARNING: {warning}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check")
    p.add_argument("--provider", choices=["cuda", "cpu"], required=True)
    p.add_argument("--site", type=Path, default=None)
    sub.add_parser("libdirs")
    args = parser.parse_args(argv)
    if args.command == "libdirs":
        print(":".join(libdirs()))
        return 0
    try:
        check(args.provider, args.site)
    except Failed as failure:
        print(f"sanity: FAILED: {failure}", file=sys.stderr)
        return 1
    except Exception as error:  # an import or a session that breaks: say what, in one line
        print(f"sanity: FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        raise
    print(f"sanity: ok ({provider_name(args.provider)})")
    return 0


def provider_name(provider: str) -> str:
    return CUDA if provider == "cuda" else CPU


if __name__ == "__main__":
    sys.exit(main())
