#!/usr/bin/env bash
# Launch training on this node with torchrun (R-MULTI-NODE).
#
#   bash launch/torchrun.sh [--section.key value ...]
#
# Several nodes: run the same command on every node with the same MASTER_ADDR
# (any one node's address) and NNODES; c10d rendezvous assigns the ranks.
set -euo pipefail
cd "$(dirname "$0")/.."

exec torchrun \
  --nnodes "${NNODES:-1}" \
  --nproc_per_node "${NPROC_PER_NODE:-8}" \
  --rdzv_id "${RDZV_ID:-classification-multi-gpu}" \
  --rdzv_backend c10d \
  --rdzv_endpoint "${MASTER_ADDR:-localhost}:${MASTER_PORT:-29500}" \
  train.py --config "${CONFIG:-configs/train.yaml}" "$@"
