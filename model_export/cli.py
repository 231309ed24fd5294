"""gan-export: publish a checkpoint as a versioned ONNX model, or check a model repository.

gan-export CHECKPOINT --repo models --name NAME [--version N] [--precision fp32|fp16] [--opset N]
gan-export check [--repo models]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model_export.errors import ExportError
from model_export.onnx_file import DEFAULT_OPSET, MIN_OPSET
from model_export.parity import TOLERANCES
from model_repository.manifest import ManifestError
from model_repository.repository import RepositoryError, list_models, list_versions, read_version


def _export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gan-export",
        description="Export a generator checkpoint (generator.pt or checkpoints/step_N.pt) to "
        "REPO/NAME/VERSION/{model.onnx,manifest.json}, verified against PyTorch first. "
        "`gan-export check --repo DIR` validates a repository.",
    )
    p.add_argument("checkpoint", type=Path, help="a run's generator.pt, or a training checkpoint")
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
    p.add_argument("--no-card", action="store_true", help="skip README.md and sample.png")
    return p


def _check_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gan-export check",
        description="Validate every version in a model repository: manifest schema, "
        "model file size and sha256.",
    )
    p.add_argument("--repo", type=Path, default=Path("models"))
    return p


def run_export(argv: list[str]) -> int:
    args = _export_parser().parse_args(argv)
    # Imported here: `gan-export check` and --help need neither torch nor onnx.
    from model_export.export import export_checkpoint

    result = export_checkpoint(
        args.checkpoint,
        args.repo,
        args.name,
        version=args.version,
        precision=args.precision,
        opset=args.opset,
        tolerance=args.tolerance,
        replace=args.replace,
        card=not args.no_card,
    )
    m = result.manifest
    parity = m["parity"]
    print(
        f"published {result.directory}: {m['task']}, {m['precision']}, opset {m['opset']}, "
        f"{m['file']['bytes'] / 1e6:.2f} MB; parity max abs error {parity['max_abs_error']:.2g} "
        f"(tolerance {parity['tolerance']:.2g}) over {len(parity['cases'])} inputs"
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
            print(
                f"ok   {name}/{version}: {m['task']}, {m['precision']}, {m['file']['bytes'] / 1e6:.2f} MB, "
                f"parity {m['parity']['max_abs_error']:.2g} <= {m['parity']['tolerance']:.2g}"
            )
    if rows == 0:
        print(f"{args.repo}: no model versions found")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["check"]:
            return run_check(argv[1:])
        return run_export(argv)
    except (ExportError, RepositoryError, ManifestError) as e:
        print(f"gan-export: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
