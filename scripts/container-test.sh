#!/usr/bin/env bash
# Builds the images and runs them for real with podman, then tears everything down (always):
#   1. the CPU image, and the compose stack's service + Prometheus (docker-compose.yml, its own
#      network and DNS): the smoke client checks /readyz, a /generate, an /upscale, the playground
#      page, and that Prometheus scraped the service; then gan-export publishes a new version into
#      the mounted repository and the running service serves it without a restart; then the
#      container's user, its HEALTHCHECK, and a drain on SIGTERM (exit 0, "draining" logged);
#   2. the GPU image, on a machine without a GPU: onnxruntime-gpu is in it, the entrypoint says it
#      serves on CPU, and it does (smoke client again).
# Grafana is not started: no Grafana image or package can be had without a registry; its
# provisioning and dashboard are checked statically (tests/docker/test_static.py).
# Usage: scripts/container-test.sh   (root; installs what it needs; about 5 minutes when cold)
set -euo pipefail
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT_DIR"
# shellcheck source=scripts/podman-setup.sh
source scripts/podman-setup.sh

PYTHON=${PYTHON:-python3}  # runs the smoke client (standard library only)
COMPOSE=${PODMAN_COMPOSE:-podman-compose}
PROJECT=gan-ct-$$
REPOSITORY=$(mktemp -d)  # the stack's mounted model repository: a copy of the bundled models
GPU_CONTAINER=$PROJECT-gpu
step() { echo "[container-test] $*" >&2; }
fail() { echo "[container-test] FAILED: $*" >&2; exit 1; }
free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
GAN_PORT=$(free_port)
PROMETHEUS_PORT=$(free_port)
GPU_PORT=$(free_port)
cp -r models/. "$REPOSITORY/"
chmod 755 "$REPOSITORY"  # mktemp's 0700 would keep the container's user out
GAN_MODELS=$REPOSITORY
GAN_SERVE_REPOSITORY_POLL_S=1
export GAN_PORT PROMETHEUS_PORT GAN_MODELS GAN_SERVE_REPOSITORY_POLL_S

cleanup() {
    "$COMPOSE" -p "$PROJECT" -f docker-compose.yml down -t 2 -v > /dev/null 2>&1 || true
    podman rm -f -t 2 "$GPU_CONTAINER" > /dev/null 2>&1 || true
    rm -rf "$REPOSITORY"
    step "torn down"
}
trap cleanup EXIT

step "building the CPU image (docker/Dockerfile)"
podman build -q -f docker/Dockerfile -t localhost/gan-serving:cpu . > /dev/null

step "compose up: gan on :$GAN_PORT, prometheus on :$PROMETHEUS_PORT"
"$COMPOSE" -p "$PROJECT" -f docker-compose.yml up -d --no-build gan prometheus > /dev/null 2>&1
gan="${PROJECT}_gan_1"
"$PYTHON" tests/docker/smoke.py --service "http://127.0.0.1:$GAN_PORT" --prometheus "http://127.0.0.1:$PROMETHEUS_PORT" \
    || { podman logs "$gan" 2>&1 | tail -20 >&2; fail "smoke test of the compose stack"; }

started=$(podman inspect "$gan" --format '{{.State.StartedAt}}')
"$PYTHON" - "$REPOSITORY" << 'PY' || fail "gan-export into the mounted repository"
import subprocess, sys, tempfile
from pathlib import Path
from tests.model_export.conftest import write_generator_file
checkpoint = write_generator_file(Path(tempfile.mkdtemp()) / "g.pt", "dcgan-transposed")
# A 16x16 generator as digits version 2 (version 1 is 32x32): a new interface, said so.
subprocess.run([sys.executable, "-m", "model_export", str(checkpoint), "--repo", sys.argv[1],
                "--name", "digits", "--no-card", "--new-interface"], check=True, stdout=subprocess.DEVNULL)
PY
[ -f "$REPOSITORY/digits/2/manifest.json" ] || fail "gan-export wrote no digits version 2"
"$PYTHON" - "$GAN_PORT" << 'PY' || { podman logs "$gan" 2>&1 | tail -20 >&2; fail "version 2 not served"; }
import json, sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}"
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    models = json.load(urllib.request.urlopen(f"{url}/v1/models"))["models"]
    if any(m["name"] == "digits" and m["version"] == 2 and m["default"] for m in models):
        break
    time.sleep(0.5)
else:
    raise SystemExit(f"digits version 2 not served within 60 s: {models}")
ask = urllib.request.Request(f"{url}/generate", data=b'{"model": "digits", "seed": 1}',
                             headers={"Content-Type": "application/json"})
answer = json.load(urllib.request.urlopen(ask))
assert answer["version"] == 2 and answer["height"] == 16, answer  # the new generator: 16x16
PY
[ "$(podman inspect "$gan" --format '{{.State.StartedAt}}')" = "$started" ] || fail "the service restarted"
step "ok: gan-export into the mounted repository: version 2 served by the running service, no restart"

uid=$(podman exec "$gan" id -u)
[ "$uid" != 0 ] || fail "the service runs as root"
step "ok: the service runs as uid $uid"
podman healthcheck run "$gan" > /dev/null 2>&1 || fail "the image's HEALTHCHECK reports unhealthy"
step "ok: HEALTHCHECK (python3 -m service.healthcheck) passes"
podman stop -t 30 "$gan" > /dev/null 2>&1
code=$(podman inspect "$gan" --format '{{.State.ExitCode}}')
[ "$code" = 0 ] || fail "exit status $code after SIGTERM"
logged() {  # logged CONTAINER TEXT: the container's log has TEXT. The log is read whole first:
    # `podman logs | grep -q` fails under pipefail whenever grep stops early and podman gets SIGPIPE.
    local log
    log=$(podman logs "$1" 2>&1)
    grep -qF -- "$2" <<< "$log"
}
logged "$gan" "draining (not ready)" || fail "no drain logged after SIGTERM"
step "ok: SIGTERM: readiness off, drain logged, exit status 0"

step "building the GPU image (docker/Dockerfile.gpu) on a stand-in base without CUDA"
podman build -q -f docker/Dockerfile.gpu -t localhost/gan-serving:gpu . > /dev/null
podman run --rm --entrypoint python3 localhost/gan-serving:gpu -c \
    "import onnxruntime as o; assert 'CUDAExecutionProvider' in o.get_available_providers(), o.get_available_providers()" \
    || fail "onnxruntime-gpu (with its CUDA provider) is not in the GPU image"
step "ok: the GPU image has onnxruntime-gpu with the CUDA provider"
podman run -d --name "$GPU_CONTAINER" -p "127.0.0.1:$GPU_PORT:8000" localhost/gan-serving:gpu > /dev/null 2>&1
"$PYTHON" tests/docker/smoke.py --service "http://127.0.0.1:$GPU_PORT" \
    || { podman logs "$GPU_CONTAINER" 2>&1 | tail -20 >&2; fail "smoke test of the GPU image without a GPU"; }
logged "$GPU_CONTAINER" "no NVIDIA GPU is visible in this container" \
    || fail "the GPU image did not log its fallback to CPU"
"$PYTHON" - "$GPU_PORT" << 'PY' || fail "a model of the GPU image is not on CPU"
import json, sys, urllib.request
models = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v1/models"))["models"]
assert models and all(m["provider"] == "CPUExecutionProvider" for m in models), models
PY
step "ok: without a GPU the GPU image says so, and serves on CPU"
step "all container checks passed"
