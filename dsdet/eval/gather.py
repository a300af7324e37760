"""Collect a picklable object from every rank on rank 0, through torch.distributed when it is initialized."""

from __future__ import annotations

from typing import TypeVar

import torch.distributed as dist

T = TypeVar("T")


def _world_size() -> int:
    """Processes in the default group; 1 when torch.distributed is not in use."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0, and in a process that is not part of a distributed group."""
    return _world_size() == 1 or dist.get_rank() == 0


def gather_to_main(local: T) -> list[T] | None:
    """Every rank's `local` in rank order on rank 0, None on the other ranks; `[local]` without a group."""
    world_size = _world_size()
    if world_size == 1:
        return [local]
    gathered: list | None = [None] * world_size if dist.get_rank() == 0 else None
    dist.gather_object(local, gathered, dst=0)
    return gathered
