#!/bin/sh
# train-export --config CONFIG --name NAME [gan-train options...]
# Trains CONFIG into $RUNS_DIR/NAME (resuming when it has checkpoints), then exports the generator
# as the next version of NAME in the model repository $MODELS_DIR. In the training image these
# are the mounted volumes /runs and /models.
set -eu
MODELS_DIR=${MODELS_DIR:-/models}
RUNS_DIR=${RUNS_DIR:-/runs}
config="" name=""
while [ $# -gt 0 ]; do
    case "$1" in
        --config) config="$2"; shift 2 ;;
        --name) name="$2"; shift 2 ;;
        *) break ;;
    esac
done
if [ -z "$config" ] || [ -z "$name" ]; then
    echo "usage: train-export --config CONFIG --name NAME [gan-train options...]" >&2
    exit 2
fi
if [ -d "$RUNS_DIR/$name/checkpoints" ]; then
    set -- --resume "$@"
fi
gan-train --config "$config" --out "$RUNS_DIR/$name" "$@"
exec gan-export "$RUNS_DIR/$name/generator.pt" --name "$name" --repo "$MODELS_DIR"
