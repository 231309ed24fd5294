"""gan-export: publish a checkpoint, or a generator made elsewhere, as a versioned ONNX model, or
check a model repository.

gan-export CHECKPOINT --repo models --name NAME [--version N] [--precision fp32|fp16] [--opset N]
           [--new-interface] [--fp16-variant]
gan-export --module pkg.mod:Factory --weights g.pt [--kwargs JSON] --task generate --latent-size 16
           [--classes 10] --output-range 0,1 --layout nchw --name NAME
gan-export model.ts.pt|model.onnx --task upscale --scale 3 --input-range 0,1 --output-range 0,1 --name NAME
gan-export fp16-variant --repo models --name NAME [--version N]   (published N -> N+1 with model.fp16.onnx)
gan-export check [--repo models]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from model_export.errors import ExportError
from model_export.onnx_file import DEFAULT_OPSET, MIN_OPSET
from model_export.parity import TOLERANCES
from model_repository.interface import NEW_INTERFACE_FLAG
from model_repository.manifest import ManifestError
from model_repository.repository import RepositoryError, list_models, list_versions, read_version


def _export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gan-export",
        description="Export a generator checkpoint (generator.pt or checkpoints/step_N.pt), or a "
        "generator or upscaler made elsewhere (--module, a TorchScript file, an ONNX file), to "
        "REPO/NAME/VERSION/{model.onnx,manifest.json}, verified against the original first. "
        "`gan-export check --repo DIR` validates a repository; `gan-export fp16-variant --repo DIR "
        "--name NAME` publishes a version again with an fp16 graph made from its fp32 one.",
    )
    p.add_argument(
        "checkpoint",
        type=Path,
        nargs="?",
        help="a run's generator.pt or a training checkpoint; or a TorchScript (.pt) or ONNX (.onnx) file",
    )
    p.add_argument("--repo", type=Path, default=Path("models"), help="model repository (default: models)")
    p.add_argument("--name", required=True, help="model name: lowercase letters, digits, '.', '_', '-'")
    p.add_argument("--version", type=int, default=None, help="version number (default: the next one)")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32")
    p.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset, >= {MIN_OPSET} (default {DEFAULT_OPSET})",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="max abs error vs PyTorch, in model units "
        f"(default fp32 {TOLERANCES['fp32']}, fp16 {TOLERANCES['fp16']})",
    )
    p.add_argument("--replace", action="store_true", help="replace an existing version (default: refuse)")
    p.add_argument(
        "--fp16-variant",
        action="store_true",
        help="also publish model.onnx's graph in float16 as model.fp16.onnx (the same inputs and outputs; "
        f"a GPU server uses it), held to the fp16 tolerance {TOLERANCES['fp16']} against PyTorch; with "
        "--precision fp32 only. A style generator's mapping.onnx stays fp32",
    )
    p.add_argument("--no-card", action="store_true", help="skip README.md and sample.png")
    p.add_argument(
        NEW_INTERFACE_FLAG,
        action="store_true",
        help="publish even though the model's interface (task, classes and their names, channels, "
        "resolution, latent size, scale, upscaler family, style) differs from the newest published "
        "version of NAME (with --replace: from the newest other version). Without it such a version "
        "is refused before any work, since requests that name no version get the newest",
    )
    p.add_argument(
        "--family",
        help="upscalers: the family this model belongs to (the models of one factor that /upscale's "
        "detail blends, e.g. an SRResNet and the SRGAN trained from it)",
    )
    p.add_argument(
        "--family-role",
        choices=("faithful", "detail"),
        help="upscalers: this model's role in --family (default: detail for an SRGAN stage, else faithful)",
    )
    made = p.add_argument_group(
        "a model made elsewhere", "what cannot be probed is declared; what can is checked against it"
    )
    made.add_argument("--module", help="package.module:Factory, imported from here or PYTHONPATH")
    made.add_argument("--weights", type=Path, help="the module's state dict (read with weights_only=True)")
    made.add_argument("--kwargs", default="{}", help="the factory's keyword arguments, as JSON")
    made.add_argument("--task", choices=("generate", "upscale"), help="what the model does")
    made.add_argument("--latent-size", type=int, help="generate: the length of z")
    made.add_argument("--classes", type=int, default=0, help="generate: number of classes (0: unconditional)")
    made.add_argument("--class-names", help="generate: the classes' names, comma-separated")
    made.add_argument(
        "--label-format", choices=("index", "onehot"), default="index", help="how the model takes labels"
    )
    made.add_argument("--output-range", help="LOW,HIGH of the model's output values, e.g. -1,1 or 0,1")
    made.add_argument("--layout", choices=("nchw", "nhwc"), default="nchw", help="the model's image layout")
    made.add_argument("--scale", type=int, help="upscale: the factor")
    made.add_argument("--input-range", default="0,1", help="upscale: LOW,HIGH the model takes pixels in")
    made.add_argument(
        "--receptive-radius", type=int, help="upscale: pixels a pixel's output depends on (probed)"
    )
    return p


# Flags for models made elsewhere, with their defaults: given to a checkpoint of this project, any
# of them (other than its default) is refused rather than ignored.
ADOPTION_FLAGS = {
    "module": None,
    "weights": None,
    "kwargs": "{}",
    "task": None,
    "latent_size": None,
    "classes": 0,
    "class_names": None,
    "label_format": "index",
    "output_range": None,
    "layout": "nchw",
    "scale": None,
    "input_range": "0,1",
    "receptive_radius": None,
}


def _adopted(args: argparse.Namespace) -> bool:
    """Is this a model made elsewhere (a module, a TorchScript or an ONNX file)?"""
    from model_export.adopt_loading import is_torchscript

    if args.module is not None:
        if args.checkpoint is not None:
            raise ExportError("give either a file or --module, not both")
        return True
    if args.checkpoint is None:
        raise ExportError("give a checkpoint (or a TorchScript or ONNX file), or --module")
    path = args.checkpoint
    foreign = path.suffix.lower() == ".onnx" or (path.is_file() and is_torchscript(path))
    given = [
        f"--{f.replace('_', '-')}" for f, default in ADOPTION_FLAGS.items() if getattr(args, f) != default
    ]
    if not foreign and given:
        raise ExportError(
            f"{', '.join(given)}: for models made elsewhere; {path} is a checkpoint of this project"
        )
    return foreign


def _adopt(args: argparse.Namespace) -> Any:
    """The export source of a model made elsewhere, from the declared interface."""
    import json

    from model_export.adopt import adopted_source
    from model_export.adopt_interface import Interface, parse_range

    if args.task is None or args.output_range is None:
        raise ExportError(
            "a model made elsewhere needs --task and --output-range (and for generate --latent-size)"
        )
    try:
        kwargs = json.loads(args.kwargs)
    except ValueError as e:
        raise ExportError(f"--kwargs is not JSON: {e}") from None
    if not isinstance(kwargs, dict):
        raise ExportError("--kwargs must be a JSON object")
    names = tuple(n.strip() for n in args.class_names.split(",")) if args.class_names else ()
    interface = Interface(
        task=args.task,
        output_range=parse_range(args.output_range, "--output-range"),
        layout=args.layout,
        latent_size=args.latent_size,
        classes=args.classes or len(names),
        class_names=names,
        label_format=args.label_format,
        scale=args.scale,
        input_range=parse_range(args.input_range, "--input-range"),
        receptive_radius=args.receptive_radius,
    )
    if args.module is not None:
        return adopted_source(interface, module=args.module, weights=args.weights, kwargs=kwargs)
    if args.weights is not None:
        raise ExportError("--weights goes with --module (a TorchScript or ONNX file holds its weights)")
    return adopted_source(interface, path=args.checkpoint)


def _fp16_variant_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gan-export fp16-variant",
        description="Publish version N of a model again, as version N+1, with an fp16 variant: its fp32 "
        "model.onnx converted to float16 in the graph (model.fp16.onnx; the same inputs and outputs), held "
        "to the fp16 tolerance against model.onnx in ONNX Runtime on export's parity inputs. For models "
        "whose checkpoint is gone; with the checkpoint, export it with --fp16-variant instead.",
    )
    p.add_argument("--repo", type=Path, default=Path("models"), help="model repository (default: models)")
    p.add_argument("--name", required=True, help="the model")
    p.add_argument("--version", type=int, default=None, help="version N, the newest (default: the newest)")
    p.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help=f"max abs error vs model.onnx, in model units (default {TOLERANCES['fp16']})",
    )
    p.add_argument("--no-card", action="store_true", help="skip README.md and sample.png")
    return p


def run_fp16_variant(argv: list[str]) -> int:
    args = _fp16_variant_parser().parse_args(argv)
    from model_export.variant import add_fp16_variant

    result = add_fp16_variant(
        args.repo, args.name, version=args.version, tolerance=args.tolerance, card=not args.no_card
    )
    m = result.manifest
    print(f"published {result.directory}: version {m['derived_from']['version']} with {_variant_summary(m)}")
    return 0


def _variant_summary(m: dict[str, Any]) -> str:
    variant = m["variants"]["fp16"]
    parity = variant["parity"]
    return (
        f"{variant['file']['name']}, {variant['file']['bytes'] / 1e6:.2f} MB; its parity max abs error "
        f"{parity['max_abs_error']:.2g} (tolerance {parity['tolerance']:.2g})"
    )


def _check_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gan-export check",
        description="Validate every version in a model repository: manifest schema, "
        "model file size and sha256.",
    )
    p.add_argument("--repo", type=Path, default=Path("models"))
    return p


def _joined_ranges(argv: list[str]) -> list[str]:
    """`--output-range -1,1` as `--output-range=-1,1`: argparse would take -1,1 for an option."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in ("--output-range", "--input-range") and arg.startswith("-"):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def run_export(argv: list[str]) -> int:
    args = _export_parser().parse_args(_joined_ranges(argv))
    # Imported here: `gan-export check` and --help need neither torch nor onnx.
    from model_export.export import check_arguments, export_source
    from model_export.source import load_source

    # The arguments first: a bad name or an existing version stops before any slow work.
    check_arguments(
        args.repo,
        args.name,
        args.version,
        args.precision,
        args.opset,
        args.tolerance,
        args.replace,
        args.fp16_variant,
    )
    source = _adopt(args) if _adopted(args) else load_source(args.checkpoint)
    result = export_source(
        source,
        args.repo,
        args.name,
        version=args.version,
        precision=args.precision,
        opset=args.opset,
        tolerance=args.tolerance,
        replace=args.replace,
        card=not args.no_card,
        family=args.family,
        family_role=args.family_role,
        new_interface=args.new_interface,
        fp16_variant=args.fp16_variant,
    )
    m = result.manifest
    parity = m["parity"]
    print(
        f"published {result.directory}: {m['task']}, {m['precision']}, opset {m['opset']}, "
        f"{m['file']['bytes'] / 1e6:.2f} MB; parity max abs error {parity['max_abs_error']:.2g} "
        f"(tolerance {parity['tolerance']:.2g}) over {len(parity['cases'])} inputs"
        + (f"; {_variant_summary(m)}" if "variants" in m else "")
    )
    return 0


def run_check(argv: list[str]) -> int:
    args = _check_parser().parse_args(argv)
    if not args.repo.is_dir():
        raise RepositoryError(f"{args.repo}: no such directory")
    failures = 0
    rows = 0
    for name in list_models(args.repo):
        for version in list_versions(args.repo, name):
            rows += 1
            try:
                m = read_version(args.repo, name, version)
            except ManifestError as e:
                failures += 1
                print(f"FAIL {name}/{version}: {e}")
                continue
            fp16 = m.get("variants", {}).get("fp16")
            print(
                f"ok   {name}/{version}: {m['task']}, {m['precision']}, {m['file']['bytes'] / 1e6:.2f} MB, "
                f"parity {m['parity']['max_abs_error']:.2g} <= {m['parity']['tolerance']:.2g}"
                + (
                    f"; fp16 variant {fp16['file']['bytes'] / 1e6:.2f} MB, parity "
                    f"{fp16['parity']['max_abs_error']:.2g} <= {fp16['parity']['tolerance']:.2g}"
                    if fp16
                    else ""
                )
            )
    if rows == 0:
        print(f"{args.repo}: no model versions found")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["check"]:
            return run_check(argv[1:])
        if argv[:1] == ["fp16-variant"]:
            return run_fp16_variant(argv[1:])
        return run_export(argv)
    except (ExportError, RepositoryError, ManifestError) as e:
        print(f"gan-export: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
