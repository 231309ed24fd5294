"""prepare.sh's helpers (run here, where PyPI is reachable; standard library only).

Subcommands:
    pin [--extra gpu] [--name onnxruntime-gpu]
        the exact version pyproject.toml's extra pins NAME to (refuses anything but ==)
    requirements [--extra gpu]
        the extra's requirements, one a line (what pip resolves for the device)
    image-packages FILE
        the package names the device image holds, from KINDS.md ("Packages: a, b, ...") or from a
        plain list (one a line, # comments)
    plan REPORT IMAGE_FILE [--big onnxruntime-gpu] [--also NAME ...]
        from `pip install --dry-run --report REPORT`: one tab-separated line per wheel to carry,
        `big|small NAME VERSION FILENAME SHA256`, skipping what the image holds (unless --also)
    check-downloads PLAN ROOT
        every planned wheel is in ROOT (big) or ROOT/small with the sha256 PyPI gave; removes any
        other wheel from ROOT/small (two versions of one package stop the offline install)
    piece-size [--limit BYTES] [--margin BYTES]
        the piece size for this working tree: 45 MiB (`split -b 45M`) where the tree leaves room
        for it and MARGIN (default 2 MiB: the tree grows while others work), else the largest
        whole MiB that does
    manifest ROOT [--limit BYTES]
        measure the working tree that travels, plan the device calls (one piece each, the last
        piece with the small wheels when it fits), write ROOT/MANIFEST; refuses a call over the limit
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
LIMIT = 64 * MIB  # what one device call may carry: working tree + carried paths
PIECE = 45 * MIB  # with the ~15 MB tree this project had, six pieces for onnxruntime-gpu 1.31.1
MARGIN = 2 * MIB
SUMS_ROOM = 16 * 1024  # SHA256SUMS, carried with every piece (3 KiB for 1.31.1)
PIECE_COMMAND = "python3 scripts/gpu/pieces.py status .gpu-wheels"
CHECK_COMMAND = "bash scripts/gpu/check.sh"


class Refused(Exception):
    pass


def normalize(name: str) -> str:
    """PEP 503: pydantic_core, Pydantic-Core and pydantic.core are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def extra(name: str) -> list[str]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    extras = data.get("project", {}).get("optional-dependencies", {})
    if name not in extras:
        raise Refused(f"pyproject.toml has no [project.optional-dependencies] {name}")
    return [str(r) for r in extras[name]]


def pin(extra_name: str, package: str) -> str:
    for requirement in extra(extra_name):
        match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*(;.*)?$", requirement)
        if not match or normalize(match.group(1)) != normalize(package):
            continue
        exact = re.fullmatch(r"==\s*([0-9][A-Za-z0-9.+!-]*)", match.group(3))
        if not exact:
            raise Refused(
                f"pyproject.toml's {extra_name} extra has {requirement!r}: pin it with == "
                "(prepare.sh downloads exactly the pinned wheel)"
            )
        return exact.group(1)
    raise Refused(f"pyproject.toml's {extra_name} extra does not name {package}")


def image_packages(path: Path) -> set[str]:
    if not path.is_file():
        raise Refused(f"{path}: no list of the device image's packages there")
    text = path.read_text()
    section = text.partition("## Python packages already there")[2] or text
    match = re.search(r"\bPackages: ([^\n]+)", section)
    if match:  # KINDS.md: "... Packages: absl-py, accelerate, ..., zipp."
        names = match.group(1).rstrip(". ").split(", ")
    else:
        names = [line.split("#")[0].strip() for line in text.splitlines()]
    found = {normalize(n) for n in names if n.strip()}
    if len(found) < 10:
        raise Refused(f"{path}: found only {len(found)} package names; not a list of the image's packages")
    return found


def plan(report: Path, image: set[str], big: str, also: set[str]) -> list[tuple[str, str, str, str, str]]:
    data = json.loads(report.read_text())
    rows: list[tuple[str, str, str, str, str]] = []
    for item in data.get("install", []):
        name = item["metadata"]["name"]
        version = item["metadata"]["version"]
        url = item["download_info"]["url"]
        sha = item["download_info"].get("archive_info", {}).get("hashes", {}).get("sha256", "")
        filename = url.rsplit("/", 1)[-1]
        if not filename.endswith(".whl"):
            raise Refused(f"{name} {version}: pip chose {filename}, not a wheel")
        if not sha:
            raise Refused(f"{name} {version}: the index gave no sha256 for {filename}")
        kind = "big" if normalize(name) == normalize(big) else "small"
        if kind == "small" and normalize(name) in image and normalize(name) not in also:
            continue
        rows.append((kind, normalize(name), version, filename, sha))
    if [r[0] for r in rows].count("big") != 1:
        raise Refused(f"{report}: pip's resolution does not hold exactly one {big} wheel")
    return sorted(rows, key=lambda r: (r[0] != "big", r[1]))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def check_downloads(plan_file: Path, root: Path) -> None:
    wanted: set[Path] = set()
    big = ""
    for line in plan_file.read_text().splitlines():
        kind, _name, _version, filename, sha = line.split("\t")
        path = root / filename if kind == "big" else root / "small" / filename
        if not path.is_file():
            raise Refused(f"{path} was not downloaded")
        actual = sha256_file(path)
        if actual != sha:
            raise Refused(f"{path} has sha256 {actual}, PyPI says {sha}: delete it and run prepare.sh again")
        wanted.add(path)
        big = filename if kind == "big" else big
    # Leftovers of an earlier pin (another version's wheel or pieces) would be listed in
    # SHA256SUMS and installed beside this one on the device.
    leftovers = [*root.glob("*.whl"), *(root / "small").glob("*"), *(root / "pieces").glob("*")]
    for other in sorted(leftovers):
        if other not in wanted and not other.name.startswith(f"{big}.part-"):
            other.unlink()
            print(f"removed {other} (not in this plan)")


def tree_bytes() -> tuple[int, int]:
    """(files, bytes) of what every device call sends: tracked and untracked-not-ignored files."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.decode()
    paths = [REPO / p for p in dict.fromkeys(listed.split("\0")) if p]
    sizes = [p.lstat().st_size for p in paths if p.is_symlink() or p.exists()]
    return len(sizes), sum(sizes)


def piece_size(limit: int, margin: int) -> tuple[int, int]:
    """(piece bytes, tree bytes): the biggest piece, in whole MiB and at most PIECE, that one call
    can carry with the tree, SHA256SUMS and `margin` to spare."""
    _, tree = tree_bytes()
    room = (limit - tree - SUMS_ROOM - margin) // MIB * MIB
    if room < 8 * MIB:
        raise Refused(
            f"the working tree is {tree} bytes: it leaves no room for pieces in a {limit}-byte call"
        )
    return min(PIECE, room), tree


def shown(path: Path) -> str:
    """`path` as a carry list names it: relative to the repository root."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def manifest(root: Path, limit: int) -> Path:
    files, tree = tree_bytes()
    rel = shown(root)
    sums = root / "SHA256SUMS"
    pieces = sorted((root / "pieces").glob("*.part-*"))
    small = sorted((root / "small").glob("*.whl"))
    if not pieces or not sums.is_file():
        raise Refused(f"{root}: no pieces or no SHA256SUMS; run the split first")
    small_bytes = sum(p.stat().st_size for p in small)
    calls: list[tuple[list[Path], str]] = [([p, sums], PIECE_COMMAND) for p in pieces]
    last = [pieces[-1], root / "small", sums]
    last_bytes = tree + pieces[-1].stat().st_size + small_bytes + sums.stat().st_size
    if last_bytes <= limit:
        calls[-1] = (last, CHECK_COMMAND)
    else:
        calls.append(([root / "small", sums], CHECK_COMMAND))
    lines = [
        f"# {rel}/MANIFEST, written by scripts/gpu/prepare.sh at {datetime.datetime.now():%Y-%m-%d %H:%M}.",
        "# One device `run` per call line, back to back (the machine stays warm 30 s):",
        "# see scripts/gpu/README.md.",
        f"# Working tree sent with every call: {tree} bytes ({files} files); a call may send {limit} bytes.",
    ]
    for number, (carry, command) in enumerate(calls, 1):
        carried = 0
        for path in carry:
            carried += sum(p.stat().st_size for p in path.glob("*")) if path.is_dir() else path.stat().st_size
        total = tree + carried
        if total > limit:
            raise Refused(
                f"call {number} would send {total} bytes (tree {tree} + carried {carried}), over {limit}: "
                "use smaller pieces (GPU_PIECE_BYTES) or a smaller working tree"
            )
        names = json.dumps([shown(p) for p in carry])
        lines.append(
            f"call {number}/{len(calls)}  sends {total} bytes (carried {carried}, headroom {limit - total})  "
            f"carry {names}  command: {command}"
        )
    path = root / "MANIFEST"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pin")
    p.add_argument("--extra", default="gpu")
    p.add_argument("--name", default="onnxruntime-gpu")
    sub.add_parser("requirements").add_argument("--extra", default="gpu")
    sub.add_parser("image-packages").add_argument("file", type=Path)
    p = sub.add_parser("plan")
    p.add_argument("report", type=Path)
    p.add_argument("image_file", type=Path)
    p.add_argument("--big", default="onnxruntime-gpu")
    p.add_argument("--also", nargs="*", default=[])
    p = sub.add_parser("check-downloads")
    p.add_argument("plan", type=Path)
    p.add_argument("root", type=Path)
    p = sub.add_parser("piece-size")
    p.add_argument("--limit", type=int, default=LIMIT)
    p.add_argument("--margin", type=int, default=MARGIN)
    p = sub.add_parser("manifest")
    p.add_argument("root", type=Path)
    p.add_argument("--limit", type=int, default=LIMIT)
    args = parser.parse_args(argv)
    try:
        if args.command == "pin":
            print(pin(args.extra, args.name))
        elif args.command == "requirements":
            print("\n".join(extra(args.extra)))
        elif args.command == "image-packages":
            print("\n".join(sorted(image_packages(args.file))))
        elif args.command == "plan":
            also = {normalize(n) for n in args.also}
            for row in plan(args.report, image_packages(args.image_file), args.big, also):
                print("\t".join(row))
        elif args.command == "piece-size":
            size, tree = piece_size(args.limit, args.margin)
            print(size)
            print(
                f"piece size {size} bytes ({size // MIB} MiB) for a working tree of {tree} bytes",
                file=sys.stderr,
            )
        elif args.command == "check-downloads":
            check_downloads(args.plan, args.root)
        else:
            print(f"wrote {manifest(args.root, args.limit)}")
    except (Refused, OSError, ValueError, KeyError, subprocess.CalledProcessError) as error:
        print(f"resolve.py {args.command}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
