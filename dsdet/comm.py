"""Control-plane collectives: flags, barriers and picklable objects exchanged between ranks on any backend.

On GPUs DeepSpeed's default process group is NCCL, which carries CUDA tensors only: a CPU tensor in a collective
on it raises. Control messages (a stop flag, a checkpoint path, per-rank RNG states, detections to evaluate) are
small CPU values, so they travel over one gloo group over every rank, created once after the default group
(as Detectron2's `utils/comm.py` does). Where the default group already serves CPU tensors (gloo on the CPU
accelerator) it is used as it is. Data-plane tensors (gradients, parameters) stay with DeepSpeed on the
accelerator.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

# (the default group it was made for, the control group); a new default group gets a new control group.
_control: tuple[Any, Any] | None = None


def world_size() -> int:
    """Processes in the job; 1 when torch.distributed is not in use."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank; 0 when torch.distributed is not in use."""
    return dist.get_rank() if world_size() > 1 else 0


def is_main_process() -> bool:
    """True on rank 0, and in a process that is not part of a distributed group."""
    return rank() == 0


def serves_cpu(group: Any = None) -> bool:
    """Whether `group` (the default group when None) has a backend for CPU tensors."""
    return "cpu:" in dist.get_backend_config(group)


def control_group() -> Any:
    """The group control messages use: the default group when it serves CPU tensors, else one gloo group over
    every rank, created on first use (every rank reaches its first control collective together) and cached."""
    global _control
    default = dist.group.WORLD
    if _control is None or _control[0] is not default:
        _control = (default, None if serves_cpu() else dist.new_group(backend="gloo"))
    return _control[1]


def forget_control_group() -> None:
    """Drop the cached group (call before destroying the process group)."""
    global _control
    _control = None


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if world_size() > 1:
        dist.barrier(group=control_group())


def any_ranks(*flags: bool) -> tuple[bool, ...]:
    """For each flag, True on every rank when it is true on at least one: several flags in one reduction."""
    if world_size() == 1:
        return tuple(flags)
    values = torch.tensor([1 if flag else 0 for flag in flags], dtype=torch.int32)
    dist.all_reduce(values, op=dist.ReduceOp.MAX, group=control_group())
    return tuple(bool(v) for v in values.tolist())


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on at least one."""
    return any_ranks(flag)[0]


def all_gather_object(obj: T) -> list[T]:
    """Every rank's `obj`, in rank order (a one-element list without a process group)."""
    if world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, obj, group=control_group())
    return gathered


def gather_to_main(obj: T) -> list[T] | None:
    """Every rank's `obj` in rank order on rank 0, None on the other ranks; `[obj]` without a process group."""
    if world_size() == 1:
        return [obj]
    gathered: list[Any] | None = [None] * world_size() if rank() == 0 else None
    dist.gather_object(obj, gathered, dst=0, group=control_group())
    return gathered


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank `src`'s `obj` on every rank."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, group=control_group())
    return box[0]
