#!/usr/bin/env bash
# System packages dsdet's tests and launchers use: OpenMPI (mpi4py, the openmpi launcher), pdsh and an ssh
# server/client (multi-node launches, tested on loopback), Slurm and munge (a one-node test cluster), libaio
# (DeepSpeed's async_io op: ZeRO-Infinity NVMe offload).
# Installs only what is missing; needs root or sudo.
set -euo pipefail
need=()
command -v mpicc >/dev/null 2>&1 || need+=(libopenmpi-dev)
command -v mpirun >/dev/null 2>&1 || need+=(openmpi-bin)
command -v pdsh >/dev/null 2>&1 || need+=(pdsh)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
[ -x /usr/sbin/slurmctld ] || need+=(slurmctld)
[ -x /usr/sbin/slurmd ] || need+=(slurmd)
command -v srun >/dev/null 2>&1 || need+=(slurm-client)
[ -x /usr/sbin/munged ] || need+=(munge)
dpkg -s libaio-dev >/dev/null 2>&1 || need+=(libaio-dev)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing system packages: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
