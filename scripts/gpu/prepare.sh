#!/usr/bin/env bash
# Prepares .gpu-wheels/ for the device machine (see scripts/gpu/README.md), here, where PyPI is
# reachable (the device machine reaches nothing):
#   1. resolves pyproject.toml's gpu extra for the device's Python (3.12, linux x86_64), with the
#      onnxruntime-gpu version that extra pins (==, read from pyproject.toml, never written here);
#   2. downloads the onnxruntime-gpu wheel into .gpu-wheels/ and every other wheel of that closure
#      the device image lacks (per its package list) into .gpu-wheels/small/, one version of each,
#      each checked against the sha256 the index gives;
#   3. cuts the onnxruntime-gpu wheel (~244 MiB, over the 64 MiB one call may send) into pieces
#      in .gpu-wheels/pieces/, one carried per call: 45 MiB (`split -b 45M`) where the working
#      tree that travels with each call leaves room for that and 2 MiB more, else the largest
#      whole MiB that does (the tree grows while others work: run this right before a session);
#   4. writes .gpu-wheels/SHA256SUMS (whole wheel, pieces, small wheels) and .gpu-wheels/MANIFEST
#      (which call carries what, and each call's size with the working tree).
# Re-running keeps what is there and verified. Any failure: one line on stderr, exit 1; pip's
# own output is in .gpu-wheels/prepare.log.
# Usage: bash scripts/gpu/prepare.sh
# Env: PYTHON (its pip resolves and downloads; default .venv/bin/python, else python3),
#      GPU_PIECE_BYTES (piece size; default as in 3.), GPU_WHEELS_DIR (default .gpu-wheels),
#      GPU_IMAGE_PACKAGES (the device image's package list; default the device README's KINDS.md
#      where it exists, else scripts/gpu/image-packages.txt), GPU_ALSO_CARRY (space-separated
#      names to carry although the image has them, e.g. "typing-extensions").
set -euo pipefail
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT_DIR"

WHEELS=${GPU_WHEELS_DIR:-.gpu-wheels}
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
KINDS=/work/.library/device/KINDS.md
if [[ -z ${GPU_IMAGE_PACKAGES:-} ]]; then
    if [[ -r $KINDS ]]; then GPU_IMAGE_PACKAGES=$KINDS; else GPU_IMAGE_PACKAGES=scripts/gpu/image-packages.txt; fi
fi
DEVICE_PYTHON=3.12  # the device image's python3 (KINDS.md: Python 3.12.3)
LOG=$WHEELS/prepare.log
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

say() { echo "[prepare] $*"; }
# One clear line, naming the step and pip's own last error where there is one.
die() {
    local detail=""
    if [[ -f $LOG ]]; then detail=$(grep -E '^(ERROR|error|pieces.py|resolve.py)' "$LOG" | tail -n 1 || true); fi
    echo "prepare.sh: FAILED: $1${detail:+ ($detail)}; full log: $LOG" >&2
    exit 1
}
# Runs a step with its output in the log (pip is verbose); on failure, die names the step.
logged() {
    local what=$1
    shift
    echo "--- $what: $*" >> "$LOG"
    "$@" >> "$LOG" 2>&1 || die "$what"
}

mkdir -p "$WHEELS/small" "$WHEELS/pieces" || { echo "prepare.sh: FAILED: cannot create $WHEELS" >&2; exit 1; }
: > "$LOG"
"$PYTHON" -m pip --version > /dev/null 2>&1 || die "$PYTHON has no pip (set PYTHON to a python with pip >= 22.2)"

version=$("$PYTHON" scripts/gpu/resolve.py pin 2>> "$LOG") || die "reading the onnxruntime-gpu pin from pyproject.toml's gpu extra"
reqs=$("$PYTHON" scripts/gpu/resolve.py requirements 2>> "$LOG") || die "reading pyproject.toml's gpu extra"
mapfile -t reqs <<< "$reqs"
say "onnxruntime-gpu==$version (pyproject.toml's gpu extra); device image's packages from $GPU_IMAGE_PACKAGES"

# pip matches manylinux_2_N tags exactly (the device README's note): offer every N the device's
# glibc (Ubuntu 24.04: 2.39) runs, and the legacy aliases, so pure, abi3 and old-tag wheels all match.
platforms=()
for n in $(seq 39 -1 5); do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
target=(--only-binary=:all: --python-version "$DEVICE_PYTHON" --implementation cp "${platforms[@]}")

# 1. The closure for the device: pip's resolver, nothing installed (--dry-run into an empty target).
logged "resolving the gpu extra for Python $DEVICE_PYTHON linux x86_64" \
    "$PYTHON" -m pip install --dry-run --ignore-installed --quiet --report "$WORK/report.json" \
    "${target[@]}" --target "$WORK/target" "${reqs[@]}"
# shellcheck disable=SC2086  # GPU_ALSO_CARRY is a list of names, split on purpose
"$PYTHON" scripts/gpu/resolve.py plan "$WORK/report.json" "$GPU_IMAGE_PACKAGES" --also ${GPU_ALSO_CARRY:-} \
    > "$WHEELS/plan.tsv" 2>> "$LOG" || die "planning which wheels the device lacks"

# 2. Downloads: only what is not already there with the index's sha256.
big=""
wanted=()
while IFS=$'\t' read -r kind name ver filename sha; do
    if [[ $kind == big ]]; then
        big=$filename
        path=$WHEELS/$filename
    else
        path=$WHEELS/small/$filename
    fi
    if [[ -f $path ]] && [[ $(sha256sum "$path" | cut -d' ' -f1) == "$sha" ]]; then
        say "have   $path"
    elif [[ $kind == big ]]; then
        say "download $name==$ver (big)"
        logged "downloading $name==$ver" "$PYTHON" -m pip download --no-deps "${target[@]}" -d "$WHEELS" "$name==$ver"
    else
        wanted+=("$name==$ver")
    fi
done < "$WHEELS/plan.tsv"
if ((${#wanted[@]})); then
    say "download ${wanted[*]}"
    logged "downloading the small wheels" "$PYTHON" -m pip download --no-deps "${target[@]}" -d "$WHEELS/small" "${wanted[@]}"
fi
logged "checking the downloads against the index's sha256" "$PYTHON" scripts/gpu/resolve.py check-downloads "$WHEELS/plan.tsv" "$WHEELS"

# 3-4. Pieces (kept where already right), SHA256SUMS, MANIFEST.
if [[ -z ${GPU_PIECE_BYTES:-} ]]; then
    GPU_PIECE_BYTES=$("$PYTHON" scripts/gpu/resolve.py piece-size 2>> "$LOG") || die "sizing the pieces"
fi
say "pieces of $GPU_PIECE_BYTES bytes ($((GPU_PIECE_BYTES / 1048576)) MiB)"
logged "splitting $big" "$PYTHON" scripts/gpu/pieces.py split "$WHEELS/$big" "$WHEELS/pieces" --bytes "$GPU_PIECE_BYTES"
logged "writing $WHEELS/SHA256SUMS" "$PYTHON" scripts/gpu/pieces.py sums "$WHEELS"
logged "verifying the pieces and small wheels" "$PYTHON" scripts/gpu/pieces.py verify "$WHEELS"
logged "planning the device calls" "$PYTHON" scripts/gpu/resolve.py manifest "$WHEELS"

say "ready:"
(cd "$WHEELS" && ls -l "$big" pieces small SHA256SUMS MANIFEST)
cat "$WHEELS/MANIFEST"
