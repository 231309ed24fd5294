"""gan-client: batch jobs against the service.

    gan-client generate --model digits-conditional --n 100000 --labels 0-9 --out samples --seed 1
    gan-client upscale photos/ photos-x4/ --model srresnet-x4 --recursive
    gan-client walk --model digits-conditional --seeds 1,2,3 --steps 12 --animation webp --out loop.webp
    (and mix, models, versions, health, inspect: gan-client --help)

Exit status: 0 when every item is done (or was already), 1 when some failed or the job stopped
early, 2 for a job that cannot start (bad arguments, another job's folder, unknown model).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
from typing import Any

from client.arguments import ANIMATION_EXTENSIONS, build_parser
from client.asynchronous import AsyncGanClient
from client.blocking import GanClient
from client.core import DEFAULT_URL, URL_ENV
from client.errors import GanClientError
from client.files import EXTENSIONS, atomic_write
from client.generate_job import class_index, parse_labels, run_generate
from client.inspect import run_inspect
from client.results import AnimationResult
from client.retry import RetryPolicy
from client.runner import JobError, Summary
from client.throttle import AdaptiveConcurrency, AdaptiveThrottle
from client.upscale_job import OutputOptions, run_upscale


def versions_table(versions: dict[str, dict[str, Any]]) -> str:
    """One line per model: its loaded versions (* the default, ~ a canary with its share)."""
    lines = []
    for name, state in sorted(versions.items()):
        canary = state.get("canary") or {}
        marks = []
        for v in state.get("loaded", []):
            mark = "*" if v == state.get("default") else ""
            if v == canary.get("version"):
                mark = f"~{canary['share']:g}"
            marks.append(f"{v}{mark}")
        line = f"{name}: loaded {', '.join(marks) or 'none'} (policy {state.get('policy')}"
        line += f", published {', '.join(map(str, state.get('published', []))) or 'none'})"
        if state.get("rolled_back"):
            line += ", rolled back"
        for v, reason in sorted(state.get("failed", {}).items()):
            line += f"\n  version {v} failed: {reason}"
        lines.append(line)
    return "\n".join(lines) or "no models"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "inspect":  # local files only: no service, no retries
        return run_inspect(args.files, args.url or os.environ.get(URL_ENV) or DEFAULT_URL, args.json)
    if args.concurrency < 1 or args.retries < 1:
        print("gan-client: --concurrency and --retries must be at least 1", file=sys.stderr)
        return 2
    if not (math.isfinite(args.throttle_k) and args.throttle_k >= 1):
        print(
            f"gan-client: --throttle-k must be a number of at least 1, got {args.throttle_k:g}",
            file=sys.stderr,
        )
        return 2
    try:
        if args.command in ("generate", "upscale"):
            summary = asyncio.run(_job(args))
        elif args.command == "walk":
            with _client(args) as gan:
                return _walk(gan, args)
        elif args.command == "mix":
            with _client(args) as gan:
                return _mix(gan, args)
        elif args.command == "models":
            with _client(args) as gan:
                print(json.dumps(gan.models(), indent=2))
            return 0
        elif args.command == "versions":
            with _client(args) as gan:
                print(versions_table(gan.versions()))
            return 0
        else:
            with _client(args) as gan:
                up, ready = gan.health(), gan.ready()
            print(f"{'up' if up else 'down'}, {'ready' if ready else 'not ready'}")
            return 0 if ready else 1
    except (JobError, ValueError) as e:
        print(f"gan-client: {e}", file=sys.stderr)
        return 2
    except GanClientError as e:
        print(f"gan-client: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gan-client: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return _report(summary)


def _client(args: argparse.Namespace) -> GanClient:
    return GanClient(
        args.url,
        api_key=args.api_key,
        timeout=args.timeout,
        retry=RetryPolicy(args.retries),
        throttle=_throttle(args),
    )


def _throttle(args: argparse.Namespace) -> AdaptiveThrottle | None:
    """The process's throttle: one client, so every worker of a job shares it."""
    return None if args.no_throttle else AdaptiveThrottle(k=args.throttle_k)


def _concurrency(args: argparse.Namespace) -> AdaptiveConcurrency | None:
    """A job's limit on its tries in flight: its --concurrency workers pull items, but at most
    `limit` of their tries are out at once, the limit found by probing (client.throttle)."""
    return None if args.no_throttle else AdaptiveConcurrency(maximum=args.concurrency)


def limit_note(limit: AdaptiveConcurrency | None) -> str | None:
    """The end-of-run line about the concurrency limit, if it ever came down (None: it did not)."""
    if limit is None or limit.lowest is None:
        return None
    return (
        f"limited tries in flight to {math.floor(limit.lowest)} at the lowest, {math.floor(limit.limit)} "
        f"at the end (of --concurrency {limit.maximum}), while the server refused work "
        "(adaptive concurrency; --no-throttle turns it off)"
    )


async def _job(args: argparse.Namespace) -> Summary:
    # Checked before any request (JobError: exit 2).
    options = (
        OutputOptions(args.scale, args.width, args.height, args.fit, args.detail, args.strip)
        if args.command == "upscale"
        else None
    )
    retry_notes: list[str] = []
    held = [0.0, 0.0]  # tries held back by the throttle: times, seconds in all

    def note_hold(wait: float) -> None:
        held[0] += 1
        held[1] += wait

    limit = _concurrency(args)
    async with AsyncGanClient(
        args.url,
        api_key=args.api_key,
        timeout=args.timeout,
        retry=RetryPolicy(args.retries),
        on_retry=lambda error, wait: retry_notes.append(f"{error} (retrying in {wait:.1f} s)"),
        max_connections=args.concurrency,
        throttle=_throttle(args),
        on_hold=note_hold,
        concurrency=limit,
    ) as client:
        progress = not args.no_progress
        if args.command == "generate":
            summary = await run_generate(
                client,
                args.out,
                model=args.model,
                n=args.n,
                labels=parse_labels(args.labels) if args.labels else None,
                seed=args.seed,
                format=args.format,
                truncation=args.truncation,
                truncation_psi=args.psi,
                per_request=args.per_request,
                concurrency=args.concurrency,
                progress=progress,
            )
        else:
            summary = await run_upscale(
                client,
                args.in_dir,
                args.out_dir,
                model=args.model,
                format=args.format,
                options=options,
                recursive=args.recursive,
                concurrency=args.concurrency,
                progress=progress,
            )
    if retry_notes:
        print(f"retried {len(retry_notes)} time(s); last: {retry_notes[-1]}", file=sys.stderr)
    if held[0]:
        print(
            f"held tries back {held[0]:.0f} time(s), {held[1]:.1f} s in all, while the server refused work "
            "(adaptive throttling; --no-throttle turns it off)",
            file=sys.stderr,
        )
    note = limit_note(limit)
    if note:
        print(note, file=sys.stderr)
    return summary


def _walk(gan: GanClient, args: argparse.Namespace) -> int:
    """One /walk request: its frames as OUT/walk-SEEDS-000.EXT and up (SEEDS: FROM-TO or the
    loop's, e.g. 1-2-3), or with --animation the one file OUT; each written whole."""
    seeds = _walk_seeds(args)
    if args.animation is None:
        if args.frame_ms is not None:
            raise ValueError("--frame-ms is an animation's frame duration: give --animation too")
    else:
        if args.format is not None:
            raise ValueError("--format is each image's file format; an animation is one file: drop --format")
        allowed = ANIMATION_EXTENSIONS[args.animation]
        if args.out.suffix.lower() not in allowed:
            raise ValueError(
                f"with --animation {args.animation}, --out is the file to write: its name must end in "
                f"{' or '.join(allowed)} (e.g. walk{allowed[0]})"
            )
        if args.out.is_dir():
            raise ValueError(f"--out {args.out} is a folder; with --animation it names the file to write")
    options: dict[str, Any] = {
        "seeds": seeds if args.seeds is not None else None,
        "model": args.model,
        "label": _label(args.label),
        "truncation": args.truncation,
        "truncation_psi": args.psi,
        "noise_seed": args.noise_seed,
        "method": args.method,
        "format": args.format,
        "animation": args.animation,
        "frame_ms": args.frame_ms,
    }
    result = gan.walk(args.from_seed, args.to_seed, args.steps, **options)
    if args.seeds is None:
        path = f"from seed {result.seeds[0]} to {result.seeds[-1]}"
    else:  # a loop: back to the first
        path = "through seeds " + " -> ".join(map(str, [*result.seeds, result.seeds[0]]))
    if isinstance(result, AnimationResult):
        atomic_write(args.out, result.data)
        print(
            f"wrote {args.out}: {result.frames} frames of {result.frame_ms} ms, {path} "
            f"({result.model} v{result.version}{'' if result.label is None else f', label {result.label}'})"
        )
        return 0
    stem = "walk-" + "-".join(map(str, seeds))
    ext = EXTENSIONS[args.format or "png"]
    for i, frame in enumerate(result.images):
        atomic_write(args.out / f"{stem}-{i:03d}{ext}", frame)
    named = "" if result.label_name is None else f", label {result.label_name}"
    print(
        f"wrote {len(result.images)} images to {args.out} ({result.model} v{result.version}, "
        f"{result.method} {path}{named})"
    )
    return 0


def _walk_seeds(args: argparse.Namespace) -> list[int]:
    """The seeds the walk goes through: --from-seed and --to-seed, or --seeds (at least two)."""
    ends = [args.from_seed, args.to_seed]
    if args.seeds is not None:
        if ends != [None, None]:
            raise ValueError("give either --seeds (a loop) or --from-seed and --to-seed, not both")
        seeds = _seeds(args.seeds, "--seeds")
        if len(seeds) < 2:
            raise ValueError("--seeds: a loop needs at least two seeds, e.g. --seeds 1,2,3")
        return seeds
    if None in ends:
        raise ValueError("give --from-seed and --to-seed, or --seeds for a loop")
    return ends


def _mix(gan: GanClient, args: argparse.Namespace) -> int:
    """One /mix request: OUT/grid.EXT (the figure), row-R.EXT, col-C.EXT and cell-R-C.EXT."""
    crossover: str | int = (
        int(args.crossover) if args.crossover.isascii() and args.crossover.isdigit() else args.crossover
    )
    result = gan.mix(
        _seeds(args.rows, "--rows"),
        _seeds(args.cols, "--cols"),
        crossover=crossover,
        model=args.model,
        label=_label(args.label),
        truncation_psi=args.psi,
        noise_seed=args.noise_seed,
        grid=True,
        format=args.format,
    )
    ext = EXTENSIONS[args.format]
    assert result.grid is not None
    atomic_write(args.out / f"grid{ext}", result.grid)
    for r, image in enumerate(result.rows):
        atomic_write(args.out / f"row-{r}{ext}", image.data)
    for c, image in enumerate(result.columns):
        atomic_write(args.out / f"col-{c}{ext}", image.data)
    for r, row in enumerate(result.cells):
        for c, image in enumerate(row):
            atomic_write(args.out / f"cell-{r}-{c}{ext}", image.data)
    print(
        f"wrote a {len(result.rows)}x{len(result.columns)} mixing grid to {args.out} ({result.model} "
        f"v{result.version}, crossover {result.crossover}: layers {result.layers_from_row} from the rows)"
    )
    return 0


def _label(text: str | None) -> int | str | None:
    """A --label: a class index as an int, a class name as it is."""
    if text is None:
        return None
    index = class_index(text)
    return text if index is None else index


def _seeds(text: str, option: str) -> list[int]:
    seeds = []
    for item in parse_labels(text):
        index = class_index(item)
        if index is None:
            raise ValueError(f"{option}: {item!r} is not a seed")
        seeds.append(index)
    return seeds


def _report(summary: Summary) -> int:
    # Each failure was printed as it happened; the count is in the summary line.
    if summary.aborted:
        print(f"stopped early: {summary.aborted}", file=sys.stderr)
    print(summary.line())
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
