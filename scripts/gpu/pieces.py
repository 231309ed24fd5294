"""Cut a wheel too big for one device call into pieces, and check and join them on the other side.

The device tool carries at most 64 MiB a call, working tree included, and the onnxruntime-gpu
wheel is about 244 MiB: prepare.sh cuts it into pieces that travel one per call to a machine that
stays warm between calls, and check.sh joins them there. The folder (default .gpu-wheels/):

    <wheel>                        the whole wheel: here only, never carried (too big for a call)
    pieces/<wheel>.part-aa, ...    its pieces, one carried per call (named as `split` names them)
    small/*.whl                    the other wheels the device image lacks, carried in one call
    SHA256SUMS                     sha256 of the whole wheel, each piece and each small wheel
                                   (`sha256sum` format, paths relative to the folder)
    MANIFEST                       which call carries what (prepare.sh writes it)

Subcommands:
    split WHEEL DIR [--bytes N]    cut WHEEL into DIR/<name>.part-aa... (N: GPU_PIECE_BYTES, else
                                   45 MiB); pieces already there with the right bytes are kept
    sums ROOT                      write ROOT/SHA256SUMS (checks that the pieces join to the wheel)
    verify ROOT [--pieces-only]    check every piece and small wheel SHA256SUMS names: one line for
                                   each missing or corrupt file, exit 1 if any
    status ROOT                    which pieces are here so far (after each carrying call; exit 0)
    join ROOT DEST                 verify the pieces, join them into DEST/<wheel>, check its sha256

Standard library only: check.sh runs it on the device before anything is installed there.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import string
import sys
from dataclasses import dataclass, field
from pathlib import Path

SUMS = "SHA256SUMS"
PIECES = "pieces"
SMALL = "small"
PART = ".part-"
DEFAULT_PIECE_BYTES = 45 * 1024 * 1024  # `split -b 45M`; prepare.sh passes a smaller one for a bigger tree
CHUNK = 1024 * 1024


class Refused(Exception):
    """A check failed; the message says which file and what to do."""


def suffix(index: int) -> str:
    """`split`'s two-letter suffixes: aa, ab, ..., az, ba, ... (676 at most)."""
    letters = string.ascii_lowercase
    if not 0 <= index < len(letters) ** 2:
        raise Refused(f"{index + 1} pieces: more than split's 676 two-letter suffixes; use bigger pieces")
    return letters[index // 26] + letters[index % 26]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def piece_bytes(option: int | None) -> int:
    value = option if option is not None else int(os.environ.get("GPU_PIECE_BYTES", DEFAULT_PIECE_BYTES))
    if value <= 0:
        raise Refused(f"piece size {value}: must be a positive number of bytes")
    return value


def split(wheel: Path, out: Path, size: int) -> list[Path]:
    """Cut `wheel` into `out`/<name>.part-xx of `size` bytes (the last one shorter). A piece already
    there with the same bytes is left alone (prepare.sh is re-run); stale pieces of the same wheel
    (an earlier, different size) are removed so none is carried by mistake."""
    if not wheel.is_file():
        raise Refused(f"{wheel}: no such file to split")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with wheel.open("rb") as f:
        index = 0
        while chunk := f.read(size):
            piece = out / f"{wheel.name}{PART}{suffix(index)}"
            same = (
                piece.is_file()
                and piece.stat().st_size == len(chunk)
                and sha256_file(piece) == hashlib.sha256(chunk).hexdigest()
            )
            if not same:
                tmp = piece.with_name(piece.name + ".tmp")
                tmp.write_bytes(chunk)
                tmp.replace(piece)
            print(f"{'kept' if same else 'wrote'} {piece} ({len(chunk)} bytes)")
            written.append(piece)
            index += 1
    for stale in sorted(out.glob(f"{wheel.name}{PART}*")):
        if stale not in written:
            stale.unlink()
            print(f"removed stale {stale}")
    return written


@dataclass
class Sums:
    """SHA256SUMS, sorted into whole wheels, their pieces (in order) and small wheels."""

    whole: dict[str, str] = field(default_factory=dict)  # wheel name -> sha256
    pieces: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # wheel -> [(rel path, sha)]
    small: list[tuple[str, str]] = field(default_factory=list)  # [(rel path, sha)]

    @classmethod
    def read(cls, root: Path) -> Sums:
        path = root / SUMS
        if not path.is_file():
            raise Refused(f"{path} is missing: carry it (prepare.sh writes it; see {root}/MANIFEST)")
        sums = cls()
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            digest, _, name = line.partition(" ")
            name = name.lstrip(" *")
            if len(digest) != 64 or not name:
                raise Refused(f"{path}:{number}: not a sha256sum line: {line!r}")
            if name.startswith(f"{PIECES}/") and PART in name:
                wheel = name[len(PIECES) + 1 :].rpartition(PART)[0]
                sums.pieces.setdefault(wheel, []).append((name, digest))
            elif name.startswith(f"{SMALL}/"):
                sums.small.append((name, digest))
            elif "/" not in name:
                sums.whole[name] = digest
            else:
                raise Refused(f"{path}:{number}: {name} is neither a wheel, a piece nor a small wheel")
        for wheel, parts in sums.pieces.items():
            parts.sort()
            if wheel not in sums.whole:
                raise Refused(f"{path}: pieces of {wheel} but no sha256 of the whole wheel")
        return sums


def write_sums(root: Path) -> Path:
    """SHA256SUMS for what `root` holds: whole wheels, pieces and small wheels. Refuses pieces
    that do not join to their wheel (a split interrupted, or pieces of another download)."""
    lines: list[str] = []
    wheels = sorted(p for p in root.glob("*.whl") if p.is_file())
    for wheel in wheels:
        whole = sha256_file(wheel)
        lines.append(f"{whole}  {wheel.name}")
        joined = hashlib.sha256()
        parts = sorted((root / PIECES).glob(f"{wheel.name}{PART}*"))
        for part in parts:
            data = part.read_bytes()
            joined.update(data)
            lines.append(f"{hashlib.sha256(data).hexdigest()}  {PIECES}/{part.name}")
        if parts and joined.hexdigest() != whole:
            raise Refused(f"the pieces of {wheel.name} in {root / PIECES} do not join to it: split again")
    for small in sorted((root / SMALL).glob("*.whl")):
        lines.append(f"{sha256_file(small)}  {SMALL}/{small.name}")
    if not lines:
        raise Refused(f"{root}: no wheels to list")
    path = root / SUMS
    tmp = path.with_name(SUMS + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path


def check(root: Path, pieces_only: bool = False) -> tuple[list[str], list[str]]:
    """(problems, fine): one line per missing or corrupt piece or small wheel, and per good one."""
    sums = Sums.read(root)
    problems: list[str] = []
    fine: list[str] = []
    entries: list[tuple[str, str, str]] = []  # (kind, rel path, sha)
    for wheel, parts in sorted(sums.pieces.items()):
        entries += [
            (f"piece {i + 1} of {len(parts)} of {wheel}", name, sha) for i, (name, sha) in enumerate(parts)
        ]
    if not pieces_only:
        entries += [("small wheel", name, sha) for name, sha in sums.small]
    for kind, name, sha in entries:
        path = root / name
        if not path.is_file():
            problems.append(f"missing {kind}: {path} (carry it: see {root}/MANIFEST)")
            continue
        actual = sha256_file(path)
        if actual != sha:
            problems.append(
                f"corrupt {kind}: {path} has sha256 {actual[:16]}..., SHA256SUMS says {sha[:16]}... "
                f"({path.stat().st_size} bytes): carry it again"
            )
        else:
            fine.append(f"ok {name}")
    return problems, fine


def verify(root: Path, pieces_only: bool = False) -> None:
    problems, fine = check(root, pieces_only)
    for line in fine:
        print(line)
    if problems:
        raise Refused("\n".join(problems) + f"\n{len(problems)} file(s) missing or corrupt in {root}")
    print(f"verified {len(fine)} file(s) in {root} against {SUMS}")


def status(root: Path) -> None:
    """After each carrying call: which pieces are here (by size: cheap), which still to come."""
    try:
        sums = Sums.read(root)
    except Refused as refusal:
        print(refusal)
        return
    for wheel, parts in sorted(sums.pieces.items()):
        here = [name for name, _ in parts if (root / name).is_file()]
        missing = [name.rpartition(PART)[2] for name, _ in parts if name not in here]
        got = " ".join(name.rpartition(PART)[2] for name in here) or "none"
        print(
            f"{wheel}: {len(here)} of {len(parts)} pieces here ({got})"
            + (f"; still to carry: {' '.join(missing)}" if missing else "; all here")
        )
    small_here = sum((root / name).is_file() for name, _ in sums.small)
    print(f"small wheels: {small_here} of {len(sums.small)} here")


def join(root: Path, dest: Path) -> list[Path]:
    """Verify the pieces, then join each wheel's pieces into `dest` and check the whole's sha256.
    A wheel already joined there with the right sha256 is kept (check.sh re-run on a warm machine)."""
    verify(root, pieces_only=True)
    sums = Sums.read(root)
    dest.mkdir(parents=True, exist_ok=True)
    joined: list[Path] = []
    for wheel, parts in sorted(sums.pieces.items()):
        target = dest / wheel
        if target.is_file() and sha256_file(target) == sums.whole[wheel]:
            print(f"already joined: {target}")
            joined.append(target)
            continue
        tmp = target.with_name(wheel + ".tmp")
        digest = hashlib.sha256()
        with tmp.open("wb") as out:
            for name, _ in parts:
                with (root / name).open("rb") as f:
                    while block := f.read(CHUNK):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != sums.whole[wheel]:
            tmp.unlink()
            raise Refused(
                f"joined {wheel} has sha256 {digest.hexdigest()[:16]}..., SHA256SUMS says "
                f"{sums.whole[wheel][:16]}...: the pieces are from another split; run prepare.sh again"
            )
        tmp.replace(target)
        print(f"joined {len(parts)} pieces into {target} (sha256 ok)")
        joined.append(target)
    return joined


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("split")
    p.add_argument("wheel", type=Path)
    p.add_argument("dir", type=Path)
    p.add_argument("--bytes", type=int, default=None)
    sub.add_parser("sums").add_argument("root", type=Path)
    p = sub.add_parser("verify")
    p.add_argument("root", type=Path)
    p.add_argument("--pieces-only", action="store_true")
    sub.add_parser("status").add_argument("root", type=Path)
    p = sub.add_parser("join")
    p.add_argument("root", type=Path)
    p.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "split":
            split(args.wheel, args.dir, piece_bytes(args.bytes))
        elif args.command == "sums":
            print(f"wrote {write_sums(args.root)}")
        elif args.command == "verify":
            verify(args.root, args.pieces_only)
        elif args.command == "status":
            status(args.root)
        else:
            join(args.root, args.dest)
    except Refused as refusal:
        print(f"pieces.py {args.command}: REFUSED: {refusal}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
