#!/usr/bin/env bash
# One-GPU benchmark suite (< 8 min on one H100/H200): train steps of FC,
# CRW, LIIR and Mask-VOS (FC's and CRW's against SFC's and videowalk's
# PyTorch steps), Mask-VOS k-means, DAVIS-2016 propagation; writes
# accelerator_suite.md and accelerator_suite.json into $OUT (or $1).
#
#   bash benchmarks/accelerator_suite.sh [OUT_DIR] [--tiny] [--steps=N ...]
#
# Reference rows need checkouts (never committed) in .refs/ (ignored):
#   mkdir -p .refs && git -C <clone of Alxead/SFC> archive HEAD \
#       | tar -x -C .refs/SFC   # likewise ajabri/videowalk -> .refs/videowalk
# and torch (+ torchvision for videowalk). The DAVIS row needs
# $CORRJAX_DATA/davis2016 (or --davis_root=...). Missing pieces skip rows.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-bench_out}
if [[ $# -gt 0 && $1 != --* ]]; then out=$1; shift; fi
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" "$here/accelerator_suite.py" --out_dir="$out" "$@"
