#!/bin/sh
# train-export --config CONFIG --name NAME [gan-train options...]
# Trains CONFIG into /runs/NAME (resuming when a checkpoint is there), then exports the generator
# as the next version of NAME in the model repository mounted at /models.
set -eu
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
resume=""
if [ -d "/runs/$name/checkpoints" ]; then resume="--resume"; fi
gan-train --config "$config" --out "/runs/$name" $resume "$@"
exec gan-export "/runs/$name/generator.pt" --name "$name" --repo /models
