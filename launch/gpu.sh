#!/usr/bin/env bash
# Single-host GPU training (all local GPUs form the 'data' mesh axis).
#
#   bash launch/gpu.sh configs/fc.py /data/runs/fc \
#       --config.data.root=/data/ytvos/train_all_frames/JPEGImages
set -euo pipefail
: "${1:?usage: launch/gpu.sh CONFIG[:ARG] WORKDIR [--config.x=y ...]}"
: "${2:?usage: launch/gpu.sh CONFIG[:ARG] WORKDIR [--config.x=y ...]}"
config=$1 workdir=$2
shift 2
# Let XLA take most of the GPU memory up front; keep TF off the GPU.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"
export TF_CPP_MIN_LOG_LEVEL=2
exec python -m corrjax.main --config="$config" --workdir="$workdir" "$@"
