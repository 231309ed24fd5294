"""Check a command's arguments without running it: `python argcheck.py PROGRAM ARGS...`.

The documentation test's `args` quick form (tests/docs/quick.py). For a training command
(gan-train, python -m training, torchrun ... -m training) the program's own parsers read the
arguments and the recipe is loaded with its --set overrides, as a run does before it writes
anything, so an unknown key, a bad value or a missing config fails here as it would there. For a
Python script, the script runs with argparse stopping it once its arguments are parsed: the
script's own parser, its own errors (exit 2), nothing measured.
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path


def check_training(argv: list[str]) -> int:
    from training.cli import compare_parser, eval_parser, seeds_parser, train_parser
    from training.config import LOSSES
    from training.sr.config import load_any_config

    command = argv[0] if argv and argv[0] in ("train", "eval", "seeds", "compare") else "train"
    rest = argv[1:] if argv and argv[0] == command else argv
    if command == "eval":
        args = eval_parser().parse_args(rest)
        return require(args.run_dir / "generator.pt")
    if command == "seeds":
        args = seeds_parser().parse_args(rest)
        return max(require(run / "eval.json") for run in args.run_dirs)
    if command == "compare":
        args = compare_parser().parse_args(rest)
        unknown = [loss for loss in args.losses.split(",") if loss.strip() and loss.strip() not in LOSSES]
        if unknown:
            print(f"argcheck: --losses: {', '.join(unknown)} not one of {', '.join(LOSSES)}", file=sys.stderr)
            return 2
        for config in args.configs:
            load_any_config(config, args.overrides)
        print(f"argcheck: compare of {len(args.configs)} recipe(s): arguments and configs valid")
        return 0
    args = train_parser().parse_args(rest)
    config = load_any_config(args.config, args.overrides)
    out = args.out or Path("runs") / args.config.stem
    if args.resume:
        return require(out / "checkpoints")
    print(
        f"argcheck: {type(config).__name__} from {args.config} with {len(args.overrides)} override(s) valid"
    )
    return 0


def require(path: Path) -> int:
    if path.exists():
        return 0
    print(f"argcheck: {path} does not exist", file=sys.stderr)
    return 2


def check_script(script: str, args: list[str]) -> int:
    parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(self: argparse.ArgumentParser, *a: object, **k: object) -> argparse.Namespace:
        parse(self, *a, **k)
        print(f"argcheck: {script}: arguments parsed; not run")
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = parse_then_stop  # type: ignore[assignment, method-assign]
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")
    print(f"argcheck: {script} parsed no arguments", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    from training.config import ConfigError

    if not argv:
        print("usage: argcheck.py PROGRAM ARGS...", file=sys.stderr)
        return 2
    if argv[0] == "torchrun":
        argv = argv[argv.index("-m") :] if "-m" in argv else argv
        argv = ["python", *argv]
    try:
        if argv[0] == "gan-train":
            return check_training(argv[1:])
        if argv[0].startswith("python") and argv[1:3] == ["-m", "training"]:
            return check_training(argv[3:])
        if argv[0].startswith("python") and len(argv) > 1 and argv[1].endswith(".py"):
            return check_script(argv[1], argv[2:])
    except ConfigError as exc:
        print(f"gan-train: error: {exc}", file=sys.stderr)
        return 2
    print(f"argcheck: no argument check for {argv[0]}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
