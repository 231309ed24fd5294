"""`gan-client upscale IN_DIR OUT_DIR`: every image of a folder through an upscaler.

The folder structure is kept (OUT_DIR/sub/name); with --format the extension changes. Every
request pins the model version the job started on (OUT_DIR/.upscale-job.json), so that a re-run
never mixes versions. Files are
told apart by their first bytes: what is not a PNG, JPEG or WebP is skipped with a note. An output
that exists is skipped, so a re-run resumes; outputs are written atomically, so an existing one is
whole. The input is never written: OUT_DIR may not be IN_DIR, and OUT_DIR is left out of the walk
when it lies inside IN_DIR.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

from client.api import MEDIA_TYPES, AsyncGanClient
from client.errors import GanClientError, ServerUnreachable
from client.files import EXTENSIONS, atomic_write, remove_partial_files, sniff_format
from client.runner import Abort, JobError, Progress, Summary, run_bounded
from client.versions import knows_versions, pinned, served_version, split_ref, version_gone

JOB_FILE = ".upscale-job.json"


def find_inputs(in_dir: Path, out_dir: Path, recursive: bool) -> Iterator[Path]:
    """Files under in_dir (sorted; into subfolders when recursive), except those under out_dir."""
    out_resolved = out_dir.resolve()
    for path in sorted(in_dir.rglob("*") if recursive else in_dir.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        resolved = path.resolve()
        if resolved == out_resolved or out_resolved in resolved.parents:
            continue
        yield path


def output_path(in_dir: Path, out_dir: Path, path: Path, fmt: str | None) -> Path:
    relative = path.relative_to(in_dir)
    target = out_dir / relative
    return target.with_suffix(EXTENSIONS[fmt]) if fmt else target


async def settle_version(client: AsyncGanClient, out_dir: Path, model: str | None) -> str:
    """The model version this job pins (`name@version`): the one its folder's outputs were made
    with, or the one asked for, or the model's default; recorded in OUT_DIR for the next run."""
    path = out_dir / JOB_FILE
    name, version = split_ref(model)
    recorded: dict[str, object] = {}
    if path.exists():
        try:
            recorded = json.loads(path.read_text())
        except ValueError as e:
            raise JobError(f"{path} is not valid JSON ({e}); move it away to start a new job") from e
        if not isinstance(recorded, dict) or not {"model", "version"} <= recorded.keys():
            raise JobError(f"{path} does not say which model made this folder; move it away")
        if name is None:
            name = str(recorded["model"])
        if version is None and name == recorded["model"]:
            version = int(str(recorded["version"]))
    served = served_version(await client.models(), "upscale", name, version)
    chosen = {"model": served["name"], "version": int(served["version"])}
    if recorded and recorded != chosen:
        raise JobError(
            f"{out_dir} holds outputs of {recorded['model']} version {recorded['version']}, not of "
            f"{chosen['model']} version {chosen['version']}; use another OUT_DIR or the same model"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(chosen) + "\n").encode())
    if not knows_versions(served):
        return str(served["name"])
    return pinned(served["name"], int(served["version"]))


async def run_upscale(
    client: AsyncGanClient,
    in_dir: Path,
    out_dir: Path,
    *,
    model: str | None = None,
    format: str | None = None,
    recursive: bool = False,
    concurrency: int = 2,
    progress: bool = True,
) -> Summary:
    if not in_dir.is_dir():
        raise JobError(f"{in_dir} is not a folder")
    if out_dir.resolve() == in_dir.resolve():
        raise JobError("OUT_DIR is IN_DIR: the inputs would be overwritten; give another folder")
    if format is not None and format not in EXTENSIONS:
        raise JobError(f"unknown format {format!r}; choose from {', '.join(EXTENSIONS)}")
    started = time.perf_counter()
    ref = await settle_version(client, out_dir, model)
    remove_partial_files(out_dir)  # a killed run's half-written files
    summary = Summary()
    todo: list[tuple[Path, Path, str]] = []
    notes: list[str] = []
    for path in find_inputs(in_dir, out_dir, recursive):
        try:
            fmt = sniff_format(path)
        except OSError as e:
            notes.append(summary.fail(1, f"{path}: cannot read: {e}"))
            continue
        if fmt is None:
            summary.ignored += 1
            notes.append(f"skipped (not a PNG, JPEG or WebP image): {path}")
            continue
        target = output_path(in_dir, out_dir, path, format)
        if target.resolve() == path.resolve():
            raise JobError(f"{target} would overwrite its input")
        if target.exists():
            summary.skipped += 1
            continue
        todo.append((path, target, MEDIA_TYPES[fmt]))

    bar = Progress(len(todo), "img", progress)
    for note in notes:
        bar.note(note)

    async def upscale(item: tuple[Path, Path, str]) -> None:
        path, target, media_type = item
        try:
            data = await asyncio.to_thread(path.read_bytes)
            result = await client.upscale(data, media_type, model=ref, format=format)
        except ServerUnreachable as e:
            summary.failed += 1
            raise Abort(f"the server cannot be reached: {e}") from e
        except GanClientError as e:
            gone = version_gone(e, ref)
            if gone is not None:  # the job's version went away
                summary.failed += 1
                raise Abort(gone) from e
            bar.note(summary.fail(1, f"{path}: {e}"))
        except OSError as e:
            bar.note(summary.fail(1, f"{path}: {e}"))
        else:
            await asyncio.to_thread(atomic_write, target, result.data)
            summary.done += 1
        bar.advance(1)

    summary.aborted = await run_bounded(todo, upscale, concurrency)
    bar.close()
    summary.seconds = time.perf_counter() - started
    return summary
