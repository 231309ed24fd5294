"""`gan-client generate`: N labelled samples into a folder, resumable and reproducible.

Image i of a job has seed `seed + i` and label `labels[i % len(labels)]`, so the job is a pure
function of its parameters: a re-run computes the same file names, skips those already written,
and the server (same model version, seed, label) gives the same bytes. The parameters are kept in
OUT/job.json; a re-run with other parameters into the same folder is refused (n may grow or
shrink). Files: OUT/LABEL/seedSEED_labelLABEL.EXT (OUT/seedSEED.EXT for an unconditional model),
each written atomically, and OUT/manifest.jsonl with a line per file (file, seed, label,
label_name, model, version, format), in seed order once the job ends.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from client.asynchronous import AsyncGanClient
from client.errors import GanClientError, ServerUnreachable
from client.files import EXTENSIONS, atomic_write, remove_partial_files
from client.results import GenerateResult
from client.runner import Abort, JobError, Progress, Summary, run_bounded
from client.versions import knows_versions, pinned, served_version, split_ref, version_gone

JOB_FILE = "job.json"
MANIFEST = "manifest.jsonl"
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class GenerateJob:
    model: str
    n: int
    seed: int
    labels: list[int] | None  # class indices cycled over the images; None: unconditional
    format: str = "png"
    truncation: float | None = None
    truncation_psi: float | None = None  # style models
    version: int | None = None  # the model version every request pins (None: a job.json from before)

    @property
    def ref(self) -> str:
        """The model as requests name it: pinned to the job's version."""
        return self.model if self.version is None else pinned(self.model, self.version)

    def item(self, i: int) -> tuple[int, int | None]:
        """(seed, label) of image i."""
        return self.seed + i, None if self.labels is None else self.labels[i % len(self.labels)]

    def file_name(self, seed: int, label: int | None) -> str:
        ext = EXTENSIONS[self.format]
        return f"seed{seed}{ext}" if label is None else f"{label}/seed{seed}_label{label}{ext}"


def class_index(label: str) -> int | None:
    """A label that is a class index ('0', '12'), as an int; None for a class name. Only ASCII
    digits count: str.isdigit() also takes '²', which int() refuses, and '٣', which it reads as 3."""
    return int(label) if label.isascii() and label.isdigit() else None


def parse_labels(text: str) -> list[str]:
    """'0-9' -> ['0', ..., '9']; '0,3,7', 'cat,dog', '0-2,7' -> the items in order."""
    out: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            raise JobError(f"empty label in {text!r}")
        first, dash, last = part.partition("-")
        low, high = class_index(first), class_index(last)
        if dash and low is not None and high is not None:
            if low > high:
                raise JobError(f"label range {part!r} runs backwards")
            out.extend(str(k) for k in range(low, high + 1))
        else:
            out.append(part)
    return out


def recorded_job(out: Path) -> dict[str, Any] | None:
    """OUT/job.json, if there is a readable one (settle_job reports one that is not)."""
    try:
        recorded = json.loads((out / JOB_FILE).read_text())
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def resolve_labels(manifest: dict[str, Any], wanted: list[str] | None) -> list[int] | None:
    """Class indices for the labels asked for (indices or names), checked against the model."""
    classes = manifest["generator"]["classes"]
    count, names = int(classes["count"]), list(classes["names"])
    if count == 0:
        if wanted:
            raise JobError(f"model {manifest['name']} is unconditional: it takes no labels")
        return None
    if not wanted:
        return list(range(count))  # every class in turn
    out = []
    for label in wanted:
        index = class_index(label)
        if index is not None and index < count:
            out.append(index)
        elif label in names:
            out.append(names.index(label))
        else:
            raise JobError(f"unknown label {label!r}; classes are 0-{count - 1} or {', '.join(names)}")
    return out


def settle_job(out: Path, job: GenerateJob, seed_given: bool) -> GenerateJob:
    """The job to run in `out`: a new one is recorded in job.json; an existing one must match
    (with no --seed given, the recorded seed is reused, which is what makes a bare re-run resume)."""
    path = out / JOB_FILE
    if path.exists():
        try:
            recorded = json.loads(path.read_text())
        except ValueError as e:
            raise JobError(f"{path} is not valid JSON ({e}); move it away to start a new job") from e
        if not seed_given:
            job = GenerateJob(**{**asdict(job), "seed": recorded.get("seed", job.seed)})
        # Unset options (None) are left out, so a job.json from before an option existed matches;
        # a job from before versions were pinned takes the version it is resumed on.
        ours = {
            k: v
            for k, v in asdict(job).items()
            if k != "n" and v is not None and (k != "version" or "version" in recorded)
        }
        theirs = {k: v for k, v in recorded.items() if k != "n" and v is not None}
        if ours != theirs:
            diff = ", ".join(
                f"{k}: {theirs.get(k)!r} there, {v!r} now" for k, v in ours.items() if theirs.get(k) != v
            )
            raise JobError(f"{out} holds another job ({diff}); use another --out or the same parameters")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(asdict(job), indent=2) + "\n").encode())
    return job


def read_manifest(out: Path) -> dict[str, dict[str, Any]]:
    """file -> entry, for entries whose file exists. A line cut short by a crash is dropped, and
    so is a file written just before a crash but never recorded: it is simply made again."""
    entries: dict[str, dict[str, Any]] = {}
    path = out / MANIFEST
    if not path.exists():
        return entries
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
            name = entry["file"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(name, str) and (out / name).is_file():
            entries[name] = entry
    return entries


def write_manifest(out: Path, entries: dict[str, dict[str, Any]]) -> None:
    ordered = sorted(entries.values(), key=lambda e: (e["seed"], e["file"]))
    atomic_write(out / MANIFEST, "".join(json.dumps(e, sort_keys=True) + "\n" for e in ordered).encode())


def chunks(job: GenerateJob, done: set[str], per_request: int) -> Iterator[list[tuple[int, int | None]]]:
    """The (seed, label) items still to make, in groups of at most per_request."""
    group: list[tuple[int, int | None]] = []
    for i in range(job.n):
        seed, label = job.item(i)
        if job.file_name(seed, label) in done:
            continue
        group.append((seed, label))
        if len(group) == per_request:
            yield group
            group = []
    if group:
        yield group


def _write_images(out: Path, job: GenerateJob, result: GenerateResult) -> list[dict[str, Any]]:
    """Each image to its file, atomically; the manifest entries, in the answer's order."""
    entries = []
    for image in result.images:
        assert image.seed is not None  # checked against the asked seeds before writing
        name = job.file_name(image.seed, image.label)
        atomic_write(out / name, image.data)
        entries.append(
            {
                "file": name,
                "seed": image.seed,
                "label": image.label,
                "label_name": image.label_name,
                "model": result.model,
                "version": result.version,
                "format": result.format,
            }
        )
    return entries


async def run_generate(
    client: AsyncGanClient,
    out: Path,
    *,
    model: str | None,
    n: int,
    labels: list[str] | None,
    seed: int | None,
    format: str = "png",
    truncation: float | None = None,
    truncation_psi: float | None = None,
    per_request: int = 16,
    concurrency: int = 4,
    progress: bool = True,
) -> Summary:
    if n < 1:
        raise JobError(f"n must be at least 1, got {n}")
    if per_request < 1:
        raise JobError(f"--per-request must be at least 1, got {per_request}")
    if format not in EXTENSIONS:
        raise JobError(f"unknown format {format!r}; choose from {', '.join(EXTENSIONS)}")
    if seed is not None and not 0 <= seed <= MAX_SEED - n:
        raise JobError(f"seed must be between 0 and {MAX_SEED - n} for n={n}")
    name, version = split_ref(model)
    recorded = recorded_job(out)  # a re-run resumes the job's model and version unless told otherwise
    if recorded is not None and name is None:
        name = recorded.get("model")
    if recorded is not None and version is None and recorded.get("model") == name:
        version = recorded.get("version")
    served = served_version(await client.models(), "generate", name, version)
    job = GenerateJob(
        model=served["name"],
        version=int(served["version"]) if knows_versions(served) else None,
        n=n,
        seed=seed if seed is not None else random.SystemRandom().randrange(MAX_SEED - 10**12),
        labels=resolve_labels(served, labels),
        format=format,
        truncation=truncation,
        truncation_psi=truncation_psi,
    )
    job = settle_job(out, job, seed_given=seed is not None)
    started = time.perf_counter()
    remove_partial_files(out)  # a killed run's half-written files
    entries = read_manifest(out)
    write_manifest(out, entries)  # rewritten clean: no half line for the appends below to follow
    wanted = {job.file_name(*job.item(i)) for i in range(n)}
    summary = Summary(skipped=len(wanted & entries.keys()))
    versions = {e.get("version") for e in entries.values()}
    bar = Progress(n, "img", progress)
    bar.advance(summary.skipped)
    older = sorted(str(v) for v in versions - {served["version"]})
    if older:
        bar.note(
            f"note: the server now serves {job.model} version {served['version']}; "
            f"files from version(s) {', '.join(older)} are kept as they are"
        )

    with (out / MANIFEST).open("a") as manifest:

        async def make(group: list[tuple[int, int | None]]) -> None:
            seeds = [s for s, _ in group]
            try:
                result: GenerateResult = await client.generate(
                    model=job.ref,
                    seeds=seeds,
                    labels=None if job.labels is None else [label for _, label in group],
                    format=job.format,
                    truncation=job.truncation,
                    truncation_psi=job.truncation_psi,
                )
            except ServerUnreachable as e:
                summary.failed += len(group)
                raise Abort(f"the server cannot be reached: {e}") from e
            except GanClientError as e:
                gone = version_gone(e, job.ref)
                if gone is not None:  # the job's version went away: nothing more can be made
                    summary.failed += len(group)
                    raise Abort(gone) from e
                bar.note(summary.fail(len(group), f"seeds {seeds[0]}..{seeds[-1]}: {e}"))
                bar.advance(len(group))
                return
            if [image.seed for image in result.images] != seeds:  # answers must match asks 1:1
                bar.note(
                    summary.fail(
                        len(group), f"seeds {seeds[0]}..{seeds[-1]}: the answer's seeds do not match"
                    )
                )
                bar.advance(len(group))
                return
            # Written off the event loop (each file is flushed to disk), then recorded.
            written = await asyncio.to_thread(_write_images, out, job, result)
            for entry in written:
                entries[entry["file"]] = entry
                manifest.write(json.dumps(entry, sort_keys=True) + "\n")
            manifest.flush()
            summary.done += len(group)
            bar.advance(len(group))

        summary.aborted = await run_bounded(chunks(job, set(entries), per_request), make, concurrency)
    bar.close()
    write_manifest(out, entries)
    summary.seconds = time.perf_counter() - started
    return summary
