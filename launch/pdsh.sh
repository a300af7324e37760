#!/usr/bin/env bash
# Train on every host of a DeepSpeed hostfile through pdsh (passwordless ssh, same paths on every host).
#
#   launch/pdsh.sh [EXPERIMENT.yaml] [KEY=VALUE ...]
#   HOSTFILE=hostfile MASTER_ADDR=node1 MASTER_PORT=29500 SSH_PORT=22 launch/pdsh.sh experiment.yaml train.epochs=3
#
# runs, from the current directory:
#
#   deepspeed --launcher_args "source ${PWD}/launch/setup_env.sh" --hostfile hostfile --launcher pdsh \
#       --master_addr node1 --master_port 29500 --ssh_port 22 --module dsdet.train experiment.yaml train.epochs=3
#
# Extra ssh options (a key, a jump host) go in PDSH_SSH_ARGS_APPEND, variables for the ranks in .deepspeed_env,
# more deepspeed options in DS_LAUNCH_ARGS (e.g. "--include node1@node2 --no_ssh_check": DeepSpeed's own ssh
# check ignores PDSH_SSH_ARGS_APPEND).
# `dsdet launch` does the same after checking the hostfile and every host.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec deepspeed --launcher_args "source ${here}/setup_env.sh" --hostfile "${HOSTFILE:-hostfile}" --launcher pdsh \
    ${MASTER_ADDR:+--master_addr "$MASTER_ADDR"} --master_port "${MASTER_PORT:-29500}" \
    ${SSH_PORT:+--ssh_port "$SSH_PORT"} ${DS_LAUNCH_ARGS:-} --module dsdet.train "$@"
