#!/usr/bin/env bash
# The GPU check: the last device call of scripts/gpu/README.md's sequence, from the repository root.
#   verify   every piece and small wheel in .gpu-wheels/ against SHA256SUMS (names a missing or
#            corrupt one: carry it again)
#   join     the pieces into the onnxruntime-gpu wheel, its sha256 checked
#   install  offline, into /tmp/gpu-site (before the image's CPU onnxruntime on PYTHONPATH)
#   gpu      nvidia-smi: which GPU, which driver
#   sanity   scripts/gpu/sanity.py: the onnxruntime imported lists CUDAExecutionProvider,
#            preload_dlls() finds CUDA and cuDNN, a convolution runs on CUDA, the service imports
#   pytest   the tests marked gpu (tests/gpu/ and any test file that marks one)
#   bench    bench/gpu_bench.py --provider cuda --out bench/results/gpu.json
# Each step has its own time limit inside one total budget; a step that overruns gets SIGTERM (the
# bench then writes what it has). A progress line per step, with the seconds since the start. The
# logs, a summary and gpu.json are written straight into $OUT when the device tool sets it (what
# is there comes back, also if the call is stopped), else into a temporary folder (printed).
#
# --cpu: the rehearsal on a machine without a GPU: the same steps on ONNX Runtime's CPU provider,
# with the Python given (PYTHON=.venv/bin/python): the wheels are verified when .gpu-wheels/ holds
# them (never installed), the gpu tests skip with their reason, the bench runs with --provider cpu
# and writes to a temporary gpu.json unless --out says otherwise (never to bench/results/gpu.json).
#
# Usage: bash scripts/gpu/check.sh [--cpu] [--quick] [--out PATH] [--budget SECONDS]
#   --quick    passes --quick to the bench
#   --out      where the bench writes its JSON (default bench/results/gpu.json; with --cpu a
#              temporary file)
#   --budget   the whole run's seconds (default 420: under the device's 8-minute mark, with time
#              for the bench's full run; the bench gets what the steps before it left, as its own
#              --budget)
# Env: PYTHON (default python3), GPU_WHEELS_DIR (default .gpu-wheels), GPU_SITE (default
#      /tmp/gpu-site), GPU_CHECK_LIBDIRS=1 (also put the nvidia-* packages' lib folders on
#      LD_LIBRARY_PATH: a diagnosis when preload_dlls is suspected), OUT (set by the device tool).
# Exit: 0 when every step passed (a bench stopped at the budget with its JSON written counts as
# passed: "partial"), 1 when a step failed, 2 on a usage error, 143 when stopped by a signal.
set -euo pipefail
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT_DIR"

usage() { sed -n '/^# Usage:/,/^# Exit:/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
MODE=cuda
QUICK=0
BENCH_OUT=""
BUDGET=420
while (($#)); do
    case $1 in
        --cpu) MODE=cpu ;;
        --quick) QUICK=1 ;;
        --out) BENCH_OUT=${2:?--out needs a path}; shift ;;
        --out=*) BENCH_OUT=${1#--out=} ;;
        --budget) BUDGET=${2:?--budget needs seconds}; shift ;;
        --budget=*) BUDGET=${1#--budget=} ;;
        -h | --help) usage; exit 0 ;;
        *) echo "check.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
[[ $BUDGET =~ ^[0-9]+$ ]] || { echo "check.sh: --budget takes whole seconds, not $BUDGET" >&2; exit 2; }

PYTHON=${PYTHON:-python3}
WHEELS=${GPU_WHEELS_DIR:-.gpu-wheels}
SITE=${GPU_SITE:-/tmp/gpu-site}
JOINED=$SITE.wheels  # the joined wheel, beside the site (not in the tree: the tree travels)
# Logs go where they come back from: $OUT on the device (at most 8 files: check.log, setup.log,
# pytest.log, pytest.xml, bench.log, summary.json, gpu.json), else a temporary folder.
if [[ -n ${OUT:-} ]]; then
    LOGDIR=$OUT
    mkdir -p "$LOGDIR"
else
    LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
fi
if [[ -z $BENCH_OUT ]]; then
    if [[ $MODE == cuda ]]; then BENCH_OUT=bench/results/gpu.json; else BENCH_OUT=$LOGDIR/gpu.json; fi
fi
mkdir -p "$(dirname "$BENCH_OUT")"
# The committed GPU figures are never replaced by CPU ones.
if [[ $MODE == cpu && $(realpath -m "$BENCH_OUT") == "$ROOT_DIR/bench/results/gpu.json" ]]; then
    echo "check.sh: --cpu would overwrite bench/results/gpu.json with CPU figures: give --out another path" >&2
    exit 2
fi
export PYTHONUNBUFFERED=1  # progress as it happens, in the logs too

RESERVE=10  # seconds kept back from the budget to write the summary
START=$SECONDS
CHILD=""
CURRENT=""  # the step running, for a signal's summary line
FINISHED=0
STEPS=()  # "name|status|seconds|note"
STEP_RC=0
STEP_S=0
BENCH_FRESH=0  # 1 once the bench has started: what is at BENCH_OUT is then its own

elapsed() { echo $((SECONDS - START)); }
say() { printf '[gpu-check +%3ds] %s\n' "$(elapsed)" "$*" | tee -a "$LOGDIR/check.log"; }
record() {
    local note=${4:-}
    STEPS+=("$1|$2|$3|${note//|/ }")
    say "$1: $2 (${3}s)${note:+: $note}"
}
json_string() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "${s//$'\t'/ }"; }

# run_step NAME CAP LOG CMD...: runs CMD under `timeout` (SIGTERM at the smaller of CAP and what
# the budget has left, SIGKILL 15 s later), its output to the terminal and appended to LOG. Sets
# STEP_RC (124: stopped at its limit) and STEP_S. In the background so a signal to this script
# can stop it (see on_signal).
run_step() {
    local name=$1 cap=$2 log=$3 left limit t0
    shift 3
    left=$((BUDGET - RESERVE - $(elapsed)))
    limit=$((cap < left ? cap : left))
    STEP_S=0
    if ((limit < 5)); then
        say "$name: no time left in the ${BUDGET}s budget"
        STEP_RC=124
        return 0
    fi
    CURRENT=$name
    say "$name: start (limit ${limit}s): $*"
    echo "=== $name: $*" >> "$log"
    t0=$SECONDS
    (
        exec > >(tee -a "$log") 2>&1
        exec timeout -s TERM -k 15 "$limit" "$@"
    ) &
    CHILD=$!
    STEP_RC=0
    wait "$CHILD" || STEP_RC=$?
    CHILD=""
    CURRENT=""
    STEP_S=$((SECONDS - t0))
}

# Writes check.log's summary and summary.json, copies the bench's JSON next to them, exits.
finish() {
    local rc=$1 entry name status seconds note failed=0 sep="" device
    ((FINISHED)) && exit "$rc"
    FINISHED=1
    # Only a JSON this run's bench wrote (an earlier one was set aside before it started).
    if ((BENCH_FRESH)) && [[ -n ${OUT:-} && -f $BENCH_OUT && $(realpath "$BENCH_OUT") != $(realpath -m "$OUT/gpu.json") ]]; then
        cp "$BENCH_OUT" "$OUT/gpu.json"
    fi
    device=${GPU_NAME:-none}
    {
        printf '{"mode": %s, "python": %s, "budget_s": %s, "elapsed_s": %s, "device": %s, "bench_out": %s, "steps": [' \
            "$(json_string "$MODE")" "$(json_string "$PYTHON")" "$BUDGET" "$(elapsed)" \
            "$(json_string "$device")" "$(json_string "$BENCH_OUT")"
        for entry in "${STEPS[@]}"; do
            IFS='|' read -r name status seconds note <<< "$entry"
            printf '%s{"step": %s, "status": %s, "seconds": %s, "note": %s}' "$sep" "$(json_string "$name")" \
                "$(json_string "$status")" "$seconds" "$(json_string "$note")"
            sep=", "
        done
        printf ']}\n'
    } > "$LOGDIR/summary.json"
    say "summary ($MODE, ${BUDGET}s budget):"
    for entry in "${STEPS[@]}"; do
        IFS='|' read -r name status seconds note <<< "$entry"
        say "  $(printf '%-8s %-8s %4ss' "$name" "$status" "$seconds")${note:+  $note}"
        [[ $status == fail || $status == timeout ]] && failed=1
    done
    ((rc == 0 && failed)) && rc=1
    say "logs: $LOGDIR; bench JSON: $BENCH_OUT; exit $rc"
    exit "$rc"
}
# shellcheck disable=SC2329  # invoked by the traps below
on_signal() {
    say "stopped by SIG$1: ending the running step with SIGTERM, writing what there is"
    if [[ -n $CHILD ]]; then
        kill -TERM "$CHILD" 2> /dev/null || true
        wait "$CHILD" 2> /dev/null || true
    fi
    record "${CURRENT:-check}" fail 0 "stopped by SIG$1 after $(elapsed)s"
    finish 143
}
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT
# set -e or an unforeseen exit: still a summary.
trap 'rc=$?; ((FINISHED)) || { record error fail "$STEP_S" "check.sh ended unexpectedly (exit $rc)"; finish "$rc"; }' EXIT
# A failure the remaining steps cannot do without: summary, then out. stop NAME NOTE for a check
# of this script's; stop_step NAME NOTE after run_step (a step stopped at its limit says so).
stop() {
    record "$1" fail 0 "$2"
    finish 1
}
stop_step() {
    local status=fail note=$2
    if ((STEP_RC == 124 || STEP_RC == 137)); then
        status=timeout
        note="stopped at its time limit; $note"
    fi
    record "$1" "$status" "$STEP_S" "$note"
    finish 1
}

say "mode $MODE, budget ${BUDGET}s, python $PYTHON, logs in $LOGDIR, bench JSON to $BENCH_OUT"

# --- wheels: verify, join, install (GPU); verify only, when there (CPU) -------------------------
if [[ $MODE == cpu ]]; then
    export PYTHONPATH=$ROOT_DIR${PYTHONPATH:+:$PYTHONPATH}
    if [[ ! -f $WHEELS/SHA256SUMS ]]; then
        record verify skipped 0 "no $WHEELS/SHA256SUMS here (prepare.sh not run): nothing to verify; --cpu installs nothing"
    else
        run_step verify 60 "$LOGDIR/setup.log" "$PYTHON" scripts/gpu/pieces.py verify "$WHEELS"
        ((STEP_RC == 0)) || stop_step verify "missing or corrupt file in $WHEELS (see above)"
        record verify ok "$STEP_S" "pieces and small wheels match SHA256SUMS; --cpu installs nothing"
    fi
else
    [[ -f $WHEELS/SHA256SUMS ]] || stop verify "no $WHEELS/SHA256SUMS: carry it (every call of scripts/gpu/README.md's sequence does)"
    stamp=$(sha256sum "$WHEELS/SHA256SUMS" | cut -d' ' -f1)
    if [[ -f $SITE/.check-stamp && $(cat "$SITE/.check-stamp") == "$stamp" ]]; then
        record install ok 0 "already installed in $SITE from these SHA256SUMS (a rerun on a warm machine)"
    else
        run_step verify 60 "$LOGDIR/setup.log" "$PYTHON" scripts/gpu/pieces.py verify "$WHEELS"
        ((STEP_RC == 0)) || stop_step verify "missing or corrupt file in $WHEELS: carry it again (see above)"
        record verify ok "$STEP_S"
        rm -rf "$JOINED"
        run_step join 60 "$LOGDIR/setup.log" "$PYTHON" scripts/gpu/pieces.py join "$WHEELS" "$JOINED"
        ((STEP_RC == 0)) || stop_step join "the pieces do not join to the wheel SHA256SUMS names (see above)"
        record join ok "$STEP_S"
        rm -rf "$SITE"
        run_step install 120 "$LOGDIR/setup.log" "$PYTHON" -m pip install -q --no-index --no-deps --no-compile \
            --no-cache-dir --target "$SITE" "$JOINED"/*.whl "$WHEELS"/small/*.whl
        ((STEP_RC == 0)) || stop_step install "pip install --target $SITE failed (see setup.log)"
        echo "$stamp" > "$SITE/.check-stamp"
        record install ok "$STEP_S" "$(find "$JOINED" "$WHEELS/small" -name '*.whl' | wc -l) wheels into $SITE"
    fi
    # The site first: its onnxruntime (the GPU build) shadows the image's CPU onnxruntime.
    export PYTHONPATH=$SITE:$ROOT_DIR${PYTHONPATH:+:$PYTHONPATH}
fi
if [[ ${GPU_CHECK_LIBDIRS:-0} == 1 ]]; then
    libdirs=$(timeout 30 "$PYTHON" scripts/gpu/sanity.py libdirs || true)
    export LD_LIBRARY_PATH=$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    say "GPU_CHECK_LIBDIRS=1: LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
fi

# --- gpu: which GPU --------------------------------------------------------------------------
if [[ $MODE == cpu ]]; then
    GPU_NAME="CPU ($(nproc) cores): --cpu"
    record gpu skipped 0 "--cpu: nvidia-smi not run"
else
    command -v nvidia-smi > /dev/null || stop gpu "no nvidia-smi on this machine: not a GPU machine?"
    GPU_NAME=$(timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2> /dev/null | head -n 1 || true)
    run_step gpu 20 "$LOGDIR/setup.log" nvidia-smi
    ((STEP_RC == 0)) || stop_step gpu "nvidia-smi failed (exit $STEP_RC)"
    record gpu ok "$STEP_S" "$GPU_NAME"
fi

# --- sanity: the onnxruntime imported, its provider, the service's stack ---------------------------
sanity=(scripts/gpu/sanity.py check --provider "$MODE")
[[ $MODE == cuda ]] && sanity+=(--site "$SITE")
run_step sanity 60 "$LOGDIR/setup.log" "$PYTHON" "${sanity[@]}"
((STEP_RC == 0)) || stop_step sanity "$(grep -h '^sanity: FAILED' "$LOGDIR/setup.log" | tail -n 1 || echo "exit $STEP_RC")"
record sanity ok "$STEP_S" "$(grep -h '^onnxruntime ' "$LOGDIR/setup.log" | tail -n 1)"

# --- pytest -m gpu -----------------------------------------------------------------------------
# Only the files that hold gpu tests: collecting the whole of tests/ on the device would import
# what its image lacks (schemathesis, playwright, ...) and stop pytest before any test ran.
targets=()
[[ -d tests/gpu ]] && targets+=(tests/gpu)
while IFS= read -r file; do
    [[ $file == tests/gpu/* ]] || targets+=("$file")
done < <(grep -rlE --include='*.py' 'mark\.gpu\b' tests 2> /dev/null | sort || true)
if ((${#targets[@]} == 0)); then
    if [[ $MODE == cpu ]]; then status=skipped; else status=warn; fi
    record pytest "$status" 0 "no gpu tests in this tree (no tests/gpu/, no test marked gpu)"
else
    run_step pytest 150 "$LOGDIR/pytest.log" "$PYTHON" -m pytest -m gpu "${targets[@]}" -p no:cacheprovider -q \
        --junitxml "$LOGDIR/pytest.xml"
    counts=$("$PYTHON" - "$LOGDIR/pytest.xml" << 'EOF' 2> /dev/null || true
import sys
import xml.etree.ElementTree as ET

root = ET.parse(sys.argv[1]).getroot()
suite = root if root.tag == "testsuite" else root.find("testsuite")
n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
print(f"{n['tests']} tests: {n['tests'] - n['failures'] - n['errors'] - n['skipped']} passed, "
      f"{n['failures']} failed, {n['errors']} errors, {n['skipped']} skipped")
EOF
    )
    case $STEP_RC in
        0)
            # On the GPU, gpu tests that all skipped mean the GPU path was not usable: said, not
            # failed (their reasons are in pytest.log). A few skips (a model without an fp16
            # graph) are the tests' own business.
            if [[ $MODE == cuda && $counts =~ \ 0\ passed ]]; then status=warn; else status=ok; fi ;;
        5) if [[ $MODE == cpu ]]; then status=ok; else status=warn; fi; counts="no gpu test selected (pytest exit 5)" ;;
        124 | 137) status=timeout ;;
        *) status=fail ;;
    esac
    record pytest "$status" "$STEP_S" "${counts:-exit $STEP_RC}"
fi

# --- bench ---------------------------------------------------------------------------------------
if [[ ! -f bench/gpu_bench.py ]]; then
    record bench fail 0 "bench/gpu_bench.py is not in this tree"
else
    bench=(bench/gpu_bench.py --provider "$MODE" --out "$BENCH_OUT")
    ((QUICK)) && bench+=(--quick)
    # The bench's own budget ends its loads in time (it skips, and records, what would overrun);
    # this script's SIGTERM at the step's limit is the backstop. 30 s: its servers' shutdown.
    bench_left=$((BUDGET - RESERVE - $(elapsed) - 30))
    if grep -q -- '"--budget"' bench/gpu_bench.py && ((bench_left >= 30)); then bench+=(--budget "$bench_left"); fi
    # An earlier JSON is set aside, so that only what this run writes is read back below.
    rm -f "$BENCH_OUT.stale"
    [[ ! -f $BENCH_OUT ]] || mv "$BENCH_OUT" "$BENCH_OUT.stale"
    BENCH_FRESH=1
    run_step bench "$BUDGET" "$LOGDIR/bench.log" "$PYTHON" "${bench[@]}"
    # What the bench wrote (partial after a SIGTERM): line 1 the provider it says the figures
    # came from, line 2 a note. No output: no readable JSON.
    written=$("$PYTHON" - "$BENCH_OUT" << 'EOF' 2> /dev/null || true
import json
import sys

data = json.load(open(sys.argv[1]))
provider = data.get("provider") or "unstated"
note = [f"provider {provider}"]
if data.get("partial"):
    note.append(f"partial (stopped during {data.get('section')}: {data.get('interrupted')})")
if data.get("errors"):
    note.append(f"errors in {', '.join(map(str, data['errors']))}")
print(provider)
print("; ".join(note))
EOF
    )
    if [[ -n $written ]]; then
        rm -f "$BENCH_OUT.stale"
        { read -r provider; read -r note; } <<< "$written"
        want=CUDA
        [[ $MODE == cpu ]] && want=CPU
        if [[ $provider != "$want" ]]; then
            record bench fail "$STEP_S" "$BENCH_OUT says $note, not $want (exit $STEP_RC)"
        else
            case $STEP_RC in
                0) record bench ok "$STEP_S" "$BENCH_OUT: $note" ;;
                124 | 137) record bench partial "$STEP_S" "stopped at the budget; $BENCH_OUT: $note" ;;
                *) record bench fail "$STEP_S" "exit $STEP_RC; $BENCH_OUT: $note" ;;
            esac
        fi
    else
        # No readable JSON: put back what was there, so a failed run leaves the last good figures.
        BENCH_FRESH=0
        [[ ! -f $BENCH_OUT.stale ]] || mv "$BENCH_OUT.stale" "$BENCH_OUT"
        if ((STEP_RC == 124 || STEP_RC == 137)); then status=timeout; else status=fail; fi
        record bench "$status" "$STEP_S" "exit $STEP_RC, no readable JSON at $BENCH_OUT (see bench.log)"
    fi
fi

finish 0
