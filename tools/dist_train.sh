#!/usr/bin/env bash
# Data-parallel training with torchrun: one process per GPU, or N CPU processes (gloo) without GPUs.
#   bash tools/dist_train.sh CONFIG NPROC [tools/train.py arguments...]
set -euo pipefail
CONFIG=$1
NPROC=$2
shift 2
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
exec "$PY" -m torch.distributed.run --nproc_per_node "$NPROC" --master_port "${PORT:-29500}" \
  tools/train.py "$CONFIG" --launcher pytorch "$@"
