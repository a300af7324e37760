"""Torch threads of CPU ranks."""

from __future__ import annotations

import os

import torch


def share_cpu_cores(ranks_on_node: int) -> int:
    """Give each rank its share of the node's cores as torch threads, unless OMP_NUM_THREADS is set. torch's
    default (every core in every rank) oversubscribes the node: with 2 ranks on 2 cores it made Faster R-CNN
    steps several times slower than one thread per rank (benchmarks/FINDINGS.md). Returns the thread count."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // ranks_on_node))
    return torch.get_num_threads()
