#!/usr/bin/env bash
# Multi-host TPU pod training: the same entry point on every worker, with
# jax.distributed.initialize() (--multihost; on a pod JAX finds the
# coordinator, process count and id itself, so no --coordinator_address,
# --num_processes or --process_id). Each host reads its slice of the global
# batch; checkpoints are written once (orbax multi-host) and process 0 alone
# logs and evaluates; the workdir must be shared storage (gs://bucket/run).
# tests/multihost_test.py runs the same entry point as 2 localhost processes.
#
#   TPU_NAME=my-v4-32 ZONE=us-central2-b bash launch/tpu_pod.sh \
#       configs/fc.py gs://my-bucket/runs/fc --config.data.root=/mnt/ytvos
#
# With AOT_TOPOLOGY (e.g. v4:2x2x4 for a v4-64, v5e:16x16 for a v5e-256),
# the step is first compiled here for that topology (corrjax.aot, needs
# `pip install -e .[tpu]`): a batch that does not divide or a step that
# does not fit in HBM stops the launch before any TPU time is spent.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME to the TPU VM name}"
: "${ZONE:?set ZONE to the TPU zone}"
: "${1:?usage: launch/tpu_pod.sh CONFIG[:ARG] WORKDIR [--config.x=y ...]}"
: "${2:?usage: launch/tpu_pod.sh CONFIG[:ARG] WORKDIR [--config.x=y ...]}"
config=$1 workdir=$2
shift 2
repo="${REPO_DIR:-~/corrjax}"
overrides=$(printf ' %q' "$@")
if [[ -n "${AOT_TOPOLOGY:-}" ]]; then
  python -m corrjax.aot --config="$config" --topology="$AOT_TOPOLOGY" \
    --num_slices="${AOT_NUM_SLICES:-1}" "$@"
fi
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all \
  --command="cd $repo && TF_CPP_MIN_LOG_LEVEL=2 python3 -m corrjax.main \
    --multihost --config=$config --workdir=$workdir$overrides"
