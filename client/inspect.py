"""`gan-client inspect FILE...`: the provenance record a generated image carries (contract.provenance)
and the request that makes the image again: a curl line, and a gan-client command where one can.

Exit status: 0 when every file carries a record, 1 when one carries none, 2 when one cannot be read.
With --json, stdout holds one JSON object per file (a line each) and nothing else.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, TextIO

from client.core import API_KEY_ENV
from contract.provenance_reader import read_provenance
from contract.regeneration import NotReproducible, Regeneration, regeneration

# Reads the answer of a JSON request on stdin and writes one image's base64 data out as bytes.
PICK = "import base64, json, sys; sys.stdout.buffer.write(base64.b64decode(json.load(sys.stdin){}))"


def inspect_file(path: Path, url: str) -> tuple[int, dict[str, Any]]:
    """(exit status, report): what `path` carries and how to make it again against `url`."""
    report: dict[str, Any] = {"file": str(path), "record": None}
    try:
        record = read_provenance(path.read_bytes())
    except (OSError, ValueError) as e:
        report["error"] = f"cannot be read: {e}"
        return 2, report
    if record is None:
        report["error"] = "carries no provenance record" + (
            " (an .npy file has no room for metadata)" if path.suffix.lower() == ".npy" else ""
        )
        return 1, report
    report["record"] = record
    try:
        regen = regeneration(record)
    except NotReproducible as e:
        report |= {"reproducible": False, "reason": str(e)}
        return 0, report
    out = f"{path.stem}.regenerated"
    key = bool(os.environ.get(API_KEY_ENV))
    report |= {
        "reproducible": True,
        "request": {
            "method": "POST",
            "url": url.rstrip("/") + regen.endpoint,
            "accept": regen.accept,
            "body": regen.body,
            "pick": list(regen.pick) or None,
        },
        "curl": curl_command(regen, url, out + regen.extension, api_key=key),
        "gan_client": gan_client_command(record, regen, url, out),
    }
    return 0, report


def curl_command(regen: Regeneration, url: str, out: str, api_key: bool = False) -> str:
    """A shell line that POSTs the request and writes the image to `out`: the answer itself, or
    (a frame or cell of a JSON answer) its base64 data decoded by python3. With `api_key`, the
    X-API-Key header takes $GAN_API_KEY (the variable, never its value)."""
    parts = ["curl", "-fsS", shlex.quote(url.rstrip("/") + regen.endpoint)]
    parts += [
        "-H",
        shlex.quote("content-type: application/json"),
        "-H",
        shlex.quote(f"accept: {regen.accept}"),
    ]
    if api_key:
        parts += ["-H", f'"X-API-Key: ${API_KEY_ENV}"']
    parts += ["-d", shlex.quote(json.dumps(regen.body, separators=(", ", ": ")))]
    if not regen.pick:
        return " ".join([*parts, "-o", shlex.quote(out)])
    where = "".join(f"[{json.dumps(key)}]" for key in regen.pick)
    return " ".join([*parts, "|", "python3", "-c", shlex.quote(PICK.format(where)), ">", shlex.quote(out)])


def gan_client_command(record: dict[str, Any], regen: Regeneration, url: str, out: str) -> str | None:
    """The gan-client command that writes the image again (under folder `out`, or as the file
    `out` + extension for an animation), with where it lands; None where its options cannot say
    the request (zero noise, or another noise seed than the image's seed on /generate)."""
    body = regen.body
    args = ["--model", str(body["model"])]
    style = "truncation_psi" in body
    if style and "noise" in body:
        return None  # zero noise: no gan-client option asks for it
    ext = regen.extension
    if regen.endpoint == "/generate":
        seed, label = body["seed"], body.get("labels")
        if style and body.get("noise_seed") != seed:
            return None  # the generate job's images take their own seed's noise
        args = ["generate", *args, "--n", "1", "--seed", str(seed)]
        if label is not None:
            args += ["--labels", str(label)]
        args += _option("--truncation", body.get("truncation")) + _option("--psi", body.get("truncation_psi"))
        args += ["--format", body["format"], "--out", out]
        written = f"{out}/seed{seed}{ext}" if label is None else f"{out}/{label}/seed{seed}_label{label}{ext}"
    elif regen.endpoint == "/walk":
        seeds = body.get("seeds")
        path = ["--seeds", ",".join(map(str, seeds))] if seeds else []
        if not seeds:
            path = ["--from-seed", str(body["from_seed"]), "--to-seed", str(body["to_seed"])]
        args = ["walk", *args, *path, "--steps", str(body["steps"]), "--method", body["method"]]
        args += _option("--label", body.get("label")) + _option("--truncation", body.get("truncation"))
        args += _option("--psi", body.get("truncation_psi")) + _option("--noise-seed", body.get("noise_seed"))
        if "animation" in body:
            written = out + ext
            args += ["--animation", body["animation"], "--frame-ms", str(body["frame_ms"]), "--out", written]
        else:
            args += ["--format", body["format"], "--out", out]
            stem = "walk-" + "-".join(map(str, seeds or [body["from_seed"], body["to_seed"]]))
            written = f"{out}/{stem}-{record['frame']['index']:03d}{ext}"
    else:
        rows, cols = ",".join(map(str, body["row_seeds"])), ",".join(map(str, body["col_seeds"]))
        args = ["mix", *args, "--rows", rows, "--cols", cols, "--crossover", str(body["crossover"])]
        args += _option("--label", body.get("label")) + _option("--psi", body.get("truncation_psi"))
        args += [*_option("--noise-seed", body.get("noise_seed")), "--format", body["format"], "--out", out]
        written = f"{out}/{'grid' if body.get('grid') else 'cell-0-0'}{ext}"
    command = " ".join(shlex.quote(a) for a in ["gan-client", *args, "--url", url])
    return f"{command}  # writes {written}"


def _option(name: str, value: object) -> list[str]:
    return [] if value is None else [name, str(value)]


def run_inspect(paths: list[Path], url: str, as_json: bool, out: TextIO = sys.stdout) -> int:
    """Inspect every file; the worst exit status (2 over 1 over 0)."""
    status = 0
    for i, path in enumerate(paths):
        code, report = inspect_file(path, url)
        status = max(status, code)
        if as_json:
            print(json.dumps(report), file=out)
            continue
        if "error" in report:
            print(f"gan-client: {path} {report['error']}", file=sys.stderr)
            continue
        if i:
            print(file=out)
        print(_describe(path, report), file=out)
    return status


def _shown(value: object) -> str:
    """An untrusted value from a file, printable: control characters (a terminal's escape
    sequences, newlines) escaped as JSON escapes them."""
    return json.dumps(value)[1:-1] if isinstance(value, str) else json.dumps(value)


def _describe(path: Path, report: dict[str, Any]) -> str:
    record = report["record"]
    model = record.get("model") if isinstance(record.get("model"), dict) else {}
    what = {"/walk": "a /walk frame", "/mix": "a /mix image", "/generate": "a /generate image"}
    kind = what.get(str(record.get("endpoint")), f"an image of {_shown(record.get('endpoint'))}")
    if record.get("animation"):
        kind = f"a /walk animation ({_shown(record['animation'])})"
    elif isinstance(record.get("frame"), dict):
        kind += f" (frame {_shown(record['frame'].get('index'))})"
    elif record.get("image") in ("cell", "grid"):
        kind += f" (the {record['image']})"
    name, version = _shown(model.get("name")), _shown(model.get("version"))
    lines = [f"{path}: {kind} of {name} version {version}", "record:"]
    lines.append(json.dumps(record, indent=2))
    if not report["reproducible"]:
        lines.append(f"cannot be made again from the file: {report['reason']}")
        return "\n".join(lines)
    lines += ["make it again:", f"  {report['curl']}"]
    if report["gan_client"]:
        lines.append(f"  {report['gan_client']}")
    return "\n".join(lines)
