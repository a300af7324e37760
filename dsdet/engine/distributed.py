"""Find out how this process was launched and join the process group.

Supported: the `deepspeed` launcher and `torchrun` (RANK/WORLD_SIZE/... already set), `mpirun` (OpenMPI or any
MPI, discovered through mpi4py), Slurm `srun` (SLURM_* variables) and a single plain process.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from datetime import timedelta

import torch.distributed as dist

from dsdet.comm import barrier, forget_control_group
from dsdet.engine.cpu.shared_memory import segment_path
from dsdet.errors import DsdetError
from dsdet.ports import free_port

_TORCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
_MPI_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE")
_DEFAULT_PORT = 29500


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job."""

    launcher: str  # "env" (deepspeed/torchrun), "mpi", "slurm" or "single"
    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _int_env(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise DsdetError(f"environment variable {name}={value!r} is not an integer") from None


def _from_torch_env() -> DistEnv:
    return DistEnv(
        launcher="env",
        rank=_int_env("RANK"),
        world_size=_int_env("WORLD_SIZE"),
        local_rank=_int_env("LOCAL_RANK"),
        master_addr=os.environ["MASTER_ADDR"],
        master_port=_int_env("MASTER_PORT"),
    )


def _from_mpi() -> DistEnv:
    try:
        from mpi4py import MPI
    except ImportError:
        raise DsdetError("launched by mpirun but mpi4py is not installed: pip install 'dsdet[mpi]'") from None
    comm = MPI.COMM_WORLD
    rank, world_size = comm.Get_rank(), comm.Get_size()
    if "OMPI_COMM_WORLD_LOCAL_RANK" in os.environ:
        local_rank = _int_env("OMPI_COMM_WORLD_LOCAL_RANK")
    else:
        hosts = comm.allgather(MPI.Get_processor_name())
        local_rank = hosts[:rank].count(hosts[rank])
    master_addr = os.environ.get("MASTER_ADDR") or comm.bcast(
        socket.gethostbyname(socket.gethostname()) if rank == 0 else None, root=0
    )
    master_port = int(os.environ.get("MASTER_PORT", _DEFAULT_PORT))
    return DistEnv("mpi", rank, world_size, local_rank, master_addr, master_port)


def _first_slurm_host(nodelist: str) -> str:
    """First host of a Slurm nodelist such as 'node[03-05,07],gpu1' (the compressed form srun exports)."""
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist)
    if match is None:
        raise DsdetError(f"cannot read the Slurm nodelist {nodelist!r}; set MASTER_ADDR")
    prefix, ranges = match.groups()
    return prefix + (ranges.split(",")[0].split("-")[0] if ranges else "")


def _from_slurm() -> DistEnv:
    nodelist = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST") or "127.0.0.1"
    master_addr = os.environ.get("MASTER_ADDR") or _first_slurm_host(nodelist)
    job_id = int(os.environ.get("SLURM_JOB_ID", "0"))
    master_port = int(os.environ.get("MASTER_PORT", 15000 + job_id % 20000))
    return DistEnv(
        launcher="slurm",
        rank=_int_env("SLURM_PROCID"),
        world_size=_int_env("SLURM_NTASKS"),
        local_rank=_int_env("SLURM_LOCALID") if "SLURM_LOCALID" in os.environ else 0,
        master_addr=master_addr,
        master_port=master_port,
    )


def discover_environment() -> DistEnv:
    """Read the launcher's variables; a process started by hand is a job of one."""
    if all(name in os.environ for name in _TORCH_VARS):
        return _from_torch_env()
    if any(name in os.environ for name in _MPI_VARS):
        return _from_mpi()
    if "SLURM_PROCID" in os.environ and "SLURM_NTASKS" in os.environ:
        return _from_slurm()
    return DistEnv("single", 0, 1, 0, "127.0.0.1", free_port())


def init_distributed(timeout_s: float = 600.0) -> DistEnv:
    """Discover the launch environment, export it as torch's env:// variables and join the process group."""
    env = discover_environment()
    os.environ.update(
        RANK=str(env.rank),
        WORLD_SIZE=str(env.world_size),
        LOCAL_RANK=str(env.local_rank),
        MASTER_ADDR=env.master_addr,
        MASTER_PORT=str(env.master_port),
    )
    if env.world_size > 1:
        # DeepSpeed sets up its shared-memory collectives when LOCAL_SIZE (its launcher's variable) says every
        # rank is on this node; torchrun, MPI and Slurm name that number differently.
        os.environ.setdefault("LOCAL_SIZE", str(local_world_size()))
    if not dist.is_initialized():
        import deepspeed

        deepspeed.init_distributed(
            auto_mpi_discovery=False, verbose=False, timeout=timedelta(seconds=timeout_s)
        )
        release_shared_memory_name(env)
    return env


# How launchers tell a process how many ranks share its node: torchrun, deepspeed, OpenMPI, MPICH, Slurm.
_LOCAL_SIZE_VARIABLES = (
    "LOCAL_WORLD_SIZE",
    "LOCAL_SIZE",
    "OMPI_COMM_WORLD_LOCAL_SIZE",
    "MPI_LOCALNRANKS",
    "SLURM_NTASKS_PER_NODE",
)


def local_world_size() -> int:
    """Ranks on this node, as the launcher reports it (1 when it does not)."""
    for name in _LOCAL_SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    if os.environ.get("SLURM_NNODES") == "1" and os.environ.get("SLURM_NTASKS", "").isdigit():
        return int(os.environ["SLURM_NTASKS"])  # a one-node step: srun -n N without --ntasks-per-node
    return 1


def release_shared_memory_name(env: DistEnv) -> None:
    """Unlink this rank's /dev/shm segment of DeepSpeed's CPU all-reduce once every rank has mapped it.

    DeepSpeed never unlinks it, so each job would otherwise leave ~64 MiB per rank in /dev/shm (RAM) behind,
    forever, even after a clean exit; the mapping stays valid after the unlink."""
    barrier()
    segment_path(env.master_addr, env.master_port, env.rank).unlink(missing_ok=True)


def shutdown_distributed() -> None:
    """Leave the process group once every rank is done with it. Exiting with the group alive lets the
    interpreter tear down gloo's worker threads while they still hold async work (ZeRO-3's prefetches): the
    process then aborts with `terminate called without an active exception` (pytorch/pytorch#190489)."""
    if dist.is_initialized():
        import deepspeed

        barrier()
        forget_control_group()
        deepspeed.comm.destroy_process_group()  # also drops the groups DeepSpeed cached
