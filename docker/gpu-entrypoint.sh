#!/bin/sh
# The GPU image's entrypoint: serve on the GPU when the container can see one; otherwise say so
# plainly and serve on CPU (onnxruntime-gpu carries the CPU provider too). Only for provider auto:
# with provider cuda the service decides (an ERROR and CPU, or with provider_strict no start).
set -eu
if [ "${GAN_SERVE_PROVIDER:-auto}" = "auto" ] && ! ls /dev/nvidia[0-9]* > /dev/null 2>&1; then
    echo "gan-serve: no NVIDIA GPU is visible in this container (no /dev/nvidia*): serving on CPU." \
        "Give the container a GPU (docker run --gpus all, or docker-compose.gpu.yml) to use CUDA." >&2
    export GAN_SERVE_PROVIDER=cpu
fi
exec gan-serve "$@"
