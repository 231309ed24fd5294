"""`gan-train` (and `python -m training`): train, evaluate a run, summarise seeds, compare losses."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from training.config import LOSSES, ConfigError
from training.data import FolderError

USAGE = """\
gan-train --config configs/NAME.toml [--set key=value ...] [--out runs/NAME] [--resume] [--dry-run]
gan-train eval RUN_DIR [--samples N] [--record]
gan-train seeds RUN_DIR [RUN_DIR ...] [--json]
gan-train compare CONFIG [CONFIG ...] [--losses a,b,...] [--out DIR] [--set key=value ...]"""


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gan-train",
        usage=USAGE,
        description="Train a GAN generator, or a super-resolution model (recipes with sr_* data).",
    )
    p.add_argument("--config", type=Path, help="TOML recipe (see configs/)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (repeatable)",
    )
    p.add_argument("--out", type=Path, help="run directory (default runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("--dry-run", action="store_true", help="a few steps through every code path")
    return p


def eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gan-train eval",
        description="Evaluate a run's generator (or upscaler, on its validation and test images); "
        "writes eval.json.",
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument(
        "--samples", type=int, help="toy data: number of samples (default: the run's eval_samples)"
    )
    p.add_argument(
        "--record",
        action="store_true",
        help="also store the new figures in the run's generator.pt, for the next gan-export",
    )
    return p


def seeds_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gan-train seeds",
        description="One recipe's runs (say, seeds 0, 1, 2) as mean ± sd of their final evaluations.",
    )
    p.add_argument("run_dirs", type=Path, nargs="+")
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    return p


def compare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gan-train compare", description="Train each recipe under each loss; write a table."
    )
    p.add_argument("configs", type=Path, nargs="+")
    p.add_argument("--losses", default="minimax,nonsaturating,wgan-gp,hinge")
    p.add_argument("--out", type=Path, default=Path("runs/compare"))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--dry-run", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    command = argv[0] if argv and argv[0] in ("train", "eval", "seeds", "compare") else "train"
    if argv and argv[0] == command:
        argv = argv[1:]
    try:
        if command == "eval":
            return _eval(eval_parser().parse_args(argv))
        if command == "seeds":
            return _seeds(seeds_parser().parse_args(argv))
        if command == "compare":
            return _compare(compare_parser().parse_args(argv))
        return _train(train_parser().parse_args(argv))
    except (ConfigError, FolderError, FileNotFoundError) as exc:
        print(f"gan-train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _train(args: argparse.Namespace) -> int:
    from training.runtime import RunError
    from training.sr.config import SRConfig, load_any_config

    cfg = load_any_config(args.config, args.overrides)
    out = args.out or Path("runs") / (args.config.stem if args.config else cfg.name)
    try:
        if isinstance(cfg, SRConfig):
            from training.sr.train import train_sr

            result = train_sr(cfg, out, resume=args.resume, dry_run=args.dry_run)
        else:
            from training.train import train

            result = train(cfg, out, resume=args.resume, dry_run=args.dry_run)
    except RunError as exc:
        print(f"gan-train: error: {exc}", file=sys.stderr)
        return 2
    if result:
        print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from training.evaluate_run import evaluate_run

    print(json.dumps(evaluate_run(args.run_dir, args.samples, record=args.record), indent=2, sort_keys=True))
    return 0


def _seeds(args: argparse.Namespace) -> int:
    from training.seeds import markdown, read_evaluations, summarize

    summary = summarize(read_evaluations(args.run_dirs))
    print(json.dumps(summary, indent=2) if args.json else markdown(summary, args.run_dirs))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from training.compare import compare, markdown_table

    losses = [s.strip() for s in args.losses.split(",") if s.strip()]
    unknown = [loss for loss in losses if loss not in LOSSES]
    if unknown:
        raise ConfigError(f"--losses: {', '.join(unknown)} not one of {', '.join(LOSSES)}")
    rows = compare(args.configs, losses, args.out, args.overrides, args.dry_run)
    print(markdown_table(rows))
    return 0
