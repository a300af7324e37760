#!/usr/bin/env bash
# Train with OpenMPI's mpirun on the hosts of a hostfile (`HOST slots=N`, the same file DeepSpeed reads).
# Each rank finds its rank, world size and local rank through mpi4py (OMPI_COMM_WORLD_*); rank 0's address
# is broadcast unless MASTER_ADDR is set, the port is MASTER_PORT (default 29500).
#
#   launch/openmpi.sh [EXPERIMENT.yaml] [KEY=VALUE ...]
#   HOSTFILE=hostfile IFACE=eth0 launch/openmpi.sh experiment.yaml train.epochs=3
#
# runs, from the current directory (which must exist on every host), with the virtualenv active:
#
#   mpirun -hostfile hostfile --mca btl ^openib --mca btl_tcp_if_include eth0 \
#       -x PATH -x MASTER_PORT -x OMP_NUM_THREADS [-x DSDET_DATA_DIR] [-x MASTER_ADDR] \
#       "$(command -v python)" -m dsdet.train experiment.yaml train.epochs=3
#
# As root, OpenMPI also wants OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1. ssh options
# (port, key) go in OMPI_MCA_plm_rsh_args, e.g. "-p 2222 -i ~/.ssh/cluster".
set -euo pipefail
export MASTER_PORT="${MASTER_PORT:-29500}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec mpirun -hostfile "${HOSTFILE:-hostfile}" --mca btl ^openib --mca btl_tcp_if_include "${IFACE:-eth0}" \
    -x PATH -x MASTER_PORT -x OMP_NUM_THREADS ${DSDET_DATA_DIR:+-x DSDET_DATA_DIR} ${MASTER_ADDR:+-x MASTER_ADDR} \
    "$(command -v python)" -m dsdet.train "$@"
