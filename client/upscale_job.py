"""`gan-client upscale IN_DIR OUT_DIR`: every image of a folder through an upscaler.

The folder structure is kept (OUT_DIR/sub/name); with --format the extension changes. Every
request pins the model version the job started on and sends the same output options (size,
detail, metadata: OutputOptions), both recorded in OUT_DIR/.upscale-job.json, so that a re-run
never mixes outputs made differently. Files are told apart by their first bytes: what is not a
PNG, JPEG or WebP is skipped with a note. An output that exists is skipped, so a re-run resumes;
outputs are written atomically, so an existing one is whole. The input is never written: OUT_DIR
may not be IN_DIR, and OUT_DIR is left out of the walk when it lies inside IN_DIR.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from client.asynchronous import AsyncGanClient
from client.errors import GanClientError, ServerUnreachable
from client.files import EXTENSIONS, atomic_write, remove_partial_files, sniff_format
from client.runner import Abort, JobError, Progress, Summary, run_bounded
from client.versions import knows_versions, pinned, served_version, split_ref, version_gone
from contract.endpoints import UPSCALE, ContractError
from contract.media import MEDIA_TYPES

JOB_FILE = ".upscale-job.json"
# What the server does when a request leaves these out; a record without them (one written
# before they existed) means these.
DEFAULT_FIT = "contain"  # with both width and height
DEFAULT_STRIP = UPSCALE.field("strip").default


@dataclass(frozen=True)
class OutputOptions:
    """How a job's outputs are made, beyond the model: their size (scale, or width and/or height
    with fit), the detail blend, the metadata stripped. None: not sent, the server's default.
    JobError, in the CLI's flag names, for a combination the server would refuse for every
    image, so that a job stops before any request."""

    scale: float | None = None
    width: int | None = None
    height: int | None = None
    fit: str | None = None
    detail: float | None = None
    strip: str | None = None

    def __post_init__(self) -> None:
        try:
            UPSCALE.check(asdict(self), spell=lambda name: "--" + name.replace("_", "-"))
        except ContractError as e:
            raise JobError(str(e)) from None

    @property
    def sized(self) -> bool:
        return self.scale is not None or self.width is not None or self.height is not None

    def params(self) -> dict[str, Any]:
        """The upscale call's keyword arguments. Only what was given is sent, so that a job with
        none of these still runs against a server from before them; fit is sent whenever both
        sides are, so that the outputs are what the record says even if the default changes."""
        params = {k: v for k, v in asdict(self).items() if v is not None}
        if self.width is not None and self.height is not None:
            params["fit"] = self.fit or DEFAULT_FIT
        return params

    def record(self) -> dict[str, Any]:
        """As recorded in the job file: every option, with the server's defaults filled in, so that
        the same outputs asked for two ways (--strip gps or nothing) compare equal."""
        record = asdict(self)
        if self.width is not None and self.height is not None:
            record["fit"] = self.fit or DEFAULT_FIT
        record["strip"] = self.strip or DEFAULT_STRIP
        return record

    @classmethod
    def from_record(cls, recorded: object) -> OutputOptions:
        """A job file's options (absent: a job from before them, made with the defaults)."""
        if recorded is None:
            return cls()
        if not isinstance(recorded, dict) or not recorded.keys() <= set(cls.__dataclass_fields__):
            raise ValueError(f"unknown options {recorded!r}")
        return cls(**recorded)

    def flags(self) -> str:
        """The CLI flags that ask for these outputs, defaults left out."""
        record = self.record()
        words = [
            f"--{key} {_number(value)}"
            for key, value in record.items()
            if value is not None and not (key == "strip" and value == DEFAULT_STRIP)
        ]
        return " ".join(words) or "the defaults (no --scale, --width, --height, --detail or --strip)"


def _number(value: object) -> str:
    """3.0 as 3, 2.5 as 2.5; a float %g would round is written whole, so two differing options never
    read alike."""
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return str(value)


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


async def settle_version(
    client: AsyncGanClient, out_dir: Path, model: str | None, options: OutputOptions | None = None
) -> tuple[str, str | None]:
    """The model version this job pins (`name@version`): the one its folder's outputs were made
    with, or the one asked for, or the model's default (with a size or detail asked for, the one
    the server would pick: job_model); with --detail, its family partner's version too (the
    server blends the two); recorded in OUT_DIR with the output options for the next run, which
    must ask for the same outputs."""
    options = options or OutputOptions()
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
        try:
            made = OutputOptions.from_record(recorded.get("options"))
        except (JobError, TypeError, ValueError) as e:
            raise JobError(f"{path} does not say how this folder's outputs were made; move it away") from e
        if made.record() != options.record():
            raise JobError(
                f"{out_dir} holds outputs made with {made.flags()}, not with {options.flags()}; to go on "
                f"with that job give the same options ({made.flags()}), or give another OUT_DIR"
            )
        if name is None:
            name = str(recorded["model"])
        if version is None and name == recorded["model"]:
            version = int(str(recorded["version"]))
    models = await client.models()
    if name is None:
        name = job_model(models, options)
    served = served_version(models, "upscale", name, version)
    check_options(models, served, options)
    chosen = {"model": served["name"], "version": int(served["version"])}
    if recorded and {k: recorded[k] for k in chosen} != chosen:
        raise JobError(
            f"{out_dir} holds outputs of {recorded['model']} version {recorded['version']}, not of "
            f"{chosen['model']} version {chosen['version']}; use another OUT_DIR or the same model"
        )
    record: dict[str, object] = {**chosen, "options": options.record()}
    partner = _partner(models, served) if options.detail is not None else None
    if partner is not None and knows_versions(served):
        earlier = recorded.get("detail_model")
        kept = (
            earlier.get("version")
            if isinstance(earlier, dict) and earlier.get("model") == partner["name"]
            else None
        )
        partner = served_version(
            models, "upscale", str(partner["name"]), None if kept is None else int(str(kept))
        )
        record["detail_model"] = {"model": partner["name"], "version": int(partner["version"])}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(record) + "\n").encode())
    if not knows_versions(served):
        return str(served["name"]), None
    partner_ref = None if partner is None else pinned(partner["name"], int(partner["version"]))
    return pinned(served["name"], int(served["version"])), partner_ref


def job_model(models: list[dict[str, Any]], options: OutputOptions) -> str | None:
    """The model a job without --model runs. The server picks a sized or detail request's model
    itself (service/lifecycle/upscale_path.py), but a job pins one model for every image, so it picks it
    here the same way where that does not depend on the image: among the faithful models (with
    detail: those whose family's detail model is served too), the one whose factor is the
    largest not above --scale. With --width/--height the factor differs from image to image: the
    smallest factor, which the server picks for any factor below the next model's (with x2 and
    x4: below 4; service/images/output_size.py has the measurements). Without size or detail, None: the
    server's default, as before."""
    if not options.sized and options.detail is None:
        return None
    defaults = [m for m in models if m.get("task") == "upscale" and m.get("default", True)]
    if options.detail is not None:
        candidates = [m for m in defaults if _role(m) == "faithful" and _partner(defaults, m) is not None]
    else:
        candidates = [m for m in defaults if _role(m) != "detail"] or defaults
    candidates = [m for m in candidates if _factor(m) is not None]
    if not candidates:
        return None  # served_version and check_options say what is missing
    candidates.sort(key=lambda m: str(m["name"]))
    if not options.sized:
        return str(candidates[0]["name"])
    factors = sorted({_factor(m) or 0 for m in candidates})
    wanted = options.scale if options.scale is not None else 1.0
    below = [f for f in factors if f <= wanted + 1e-9]
    factor = max(below) if below else factors[0]
    return str(next(m["name"] for m in candidates if _factor(m) == factor))


def check_options(models: list[dict[str, Any]], served: dict[str, Any], options: OutputOptions) -> None:
    """JobError for options no image could be made with by these models: a scale above every
    served factor, detail with a model outside a family of two."""
    upscalers = [m for m in models if m.get("task") == "upscale"]
    factors = [f for f in map(_factor, upscalers) if f is not None]
    if options.scale is not None and factors and options.scale > max(factors) + 1e-9:
        raise JobError(
            f"--scale {_number(options.scale)}: the served upscalers enlarge by at most {max(factors)}"
        )
    if options.detail is None or not served.get("upscaler"):
        return  # (a manifest without `upscaler`: a server too old to say; it answers each image)
    role = _role(served)
    families = sorted(
        {
            f"{_family(m)}: {m['name']} and {partner['name']}"
            for m in upscalers
            if _role(m) == "faithful" and (partner := _partner(upscalers, m)) is not None
        }
    )
    hint = f"families served: {'; '.join(families)}" if families else "the server serves no family"
    if role is None:
        raise JobError(
            f"--detail blends a family's faithful and detail models; {served['name']} is in no family "
            f"({hint}): leave --detail out, or give --model a family's model"
        )
    if _partner(upscalers, served) is None:
        raise JobError(
            f"--detail blends a family's faithful and detail models; {served['name']} is the {role} "
            f"model of {_family(served)}, whose other model is not served ({hint})"
        )


def _factor(manifest: dict[str, Any]) -> int | None:
    scale = (manifest.get("upscaler") or {}).get("scale")
    return None if scale is None else int(scale)


def _family(manifest: dict[str, Any]) -> str | None:
    family = (manifest.get("upscaler") or {}).get("family") or {}
    return None if family.get("name") is None else str(family["name"])


def _role(manifest: dict[str, Any]) -> str | None:
    family = (manifest.get("upscaler") or {}).get("family") or {}
    return None if family.get("role") is None else str(family["role"])


def _partner(models: list[dict[str, Any]], manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The other model of `manifest`'s family, when one is served."""
    family, role = _family(manifest), _role(manifest)
    if family is None:
        return None
    return next((m for m in models if _family(m) == family and _role(m) not in (None, role)), None)


async def run_upscale(
    client: AsyncGanClient,
    in_dir: Path,
    out_dir: Path,
    *,
    model: str | None = None,
    format: str | None = None,
    options: OutputOptions | None = None,
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
    options = options or OutputOptions()
    ref, partner_ref = await settle_version(client, out_dir, model, options)
    params = options.params()
    if partner_ref is not None:
        params["detail_model"] = partner_ref
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
        shown = 0.0  # of this image, on the bar: its finished tiles' share, as the server reports them

        def tiles(done: int, total: int) -> None:
            nonlocal shown
            bar.advance(done / total - shown)
            shown = done / total

        try:
            data = await asyncio.to_thread(path.read_bytes)
            result = await client.upscale(
                data, media_type, model=ref, format=format, progress=tiles if progress else None, **params
            )
        except ServerUnreachable as e:
            summary.failed += 1
            raise Abort(f"the server cannot be reached: {e}") from e
        except GanClientError as e:
            gone = version_gone(e, ref)
            if partner_ref is not None and repr(split_ref(partner_ref)[0]) in str(e):
                gone = version_gone(e, partner_ref)  # the 404 names the detail model
            if gone is not None:  # the job's version (or its detail model's) went away
                summary.failed += 1
                raise Abort(gone) from e
            bar.note(summary.fail(1, f"{path}: {e}"))
        except OSError as e:
            bar.note(summary.fail(1, f"{path}: {e}"))
        else:
            await asyncio.to_thread(atomic_write, target, result.data)
            summary.done += 1
        bar.advance(1 - shown)

    summary.aborted = await run_bounded(todo, upscale, concurrency)
    bar.close()
    summary.seconds = time.perf_counter() - started
    return summary
