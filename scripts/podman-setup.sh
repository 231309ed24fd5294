#!/usr/bin/env bash
# Makes podman usable on this kind of machine (Debian, root, no registry): installs podman, runc
# and debootstrap when missing, writes the configuration podman needs here, bootstraps a Debian
# base image, and builds local stand-ins for the base images the project's Dockerfiles and compose
# file name (nothing can be pulled). Idempotent: what exists is kept.
#   source scripts/podman-setup.sh   (exports CONTAINERS_CONF and BUILDAH_FORMAT)
set -euo pipefail

PODMAN_STATE=${PODMAN_STATE:-/var/tmp/gan-serving-podman}
ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON_IMAGE=docker.io/library/python:3.11-slim
PROMETHEUS_IMAGE=$(sed -n 's/^ *image: \(.*prometheus.*\)$/\1/p' "$ROOT_DIR/docker-compose.yml")
CUDA_IMAGE=docker.io/$(sed -n "s/^ARG CUDA_IMAGE=\(.*\)$/\1/p" "$ROOT_DIR/docker/Dockerfile.gpu")  # Docker Hub, as docker resolves it
say() { echo "[podman-setup] $*" >&2; }

missing=()
for tool in podman runc debootstrap; do
    command -v "$tool" > /dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    say "installing ${missing[*]} (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null
fi

# crun fails on this VM's hybrid cgroups, and podman's default rlimits exceed the sandbox's.
mkdir -p "$PODMAN_STATE"
cat > "$PODMAN_STATE/containers.conf" << 'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF="$PODMAN_STATE/containers.conf"
export BUILDAH_FORMAT=docker  # keeps HEALTHCHECK in the images

if ! podman image exists localhost/debian:bookworm; then
    say "bootstrapping a Debian bookworm base image (debootstrap, about a minute)"
    rm -rf "$PODMAN_STATE/rootfs"
    debootstrap --variant=minbase bookworm "$PODMAN_STATE/rootfs" http://deb.debian.org/debian > "$PODMAN_STATE/debootstrap.log"
    tar -C "$PODMAN_STATE/rootfs" -c . | podman import - localhost/debian:bookworm > /dev/null
    rm -rf "$PODMAN_STATE/rootfs"
fi

standin() {  # standin IMAGE CONTAINERFILE
    if podman image exists "$1"; then return; fi
    say "building a local stand-in for $1"
    local context="$PODMAN_STATE/standin-context"
    rm -rf "$context" && mkdir -p "$context"
    cp /etc/ssl/certs/ca-certificates.crt "$context/"
    podman build -q -f "$ROOT_DIR/scripts/standins/$2" -t "$1" "$context" > /dev/null
}
standin "$PYTHON_IMAGE" python.Containerfile
standin "$PROMETHEUS_IMAGE" prometheus.Containerfile
standin "$CUDA_IMAGE" cuda.Containerfile
say "ready: podman $(podman --version | awk '{print $3}'), CONTAINERS_CONF=$CONTAINERS_CONF"
