#!/usr/bin/env bash
# Train with torchrun's c10d rendezvous: start this same command on every node (by hand, tmux, or a scheduler).
# No ssh between nodes is needed; the nodes meet at RDZV_ENDPOINT (host:port of any one of them).
#
#   NNODES=2 NPROC_PER_NODE=4 RDZV_ENDPOINT=node1:29400 launch/torchrun.sh [EXPERIMENT.yaml] [KEY=VALUE ...]
#
# runs, on each node:
#
#   torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint node1:29400 --rdzv-id dsdet \
#       -m dsdet.train experiment.yaml train.epochs=3
set -euo pipefail
: "${RDZV_ENDPOINT:?set RDZV_ENDPOINT=host:port of one node (the same on every node)}"
exec torchrun --nnodes "${NNODES:-1}" --nproc-per-node "${NPROC_PER_NODE:-1}" --rdzv-backend c10d \
    --rdzv-endpoint "$RDZV_ENDPOINT" --rdzv-id "${RDZV_ID:-dsdet}" -m dsdet.train "$@"
