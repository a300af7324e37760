"""Keep freed memory in glibc's malloc heap on CPU ranks, so every training step reuses the same pages.

By default glibc serves each allocation above a threshold (at most 32 MiB) with a fresh `mmap` and returns it to
the kernel on free, and it trims the heap's free top whenever it exceeds twice that. A training step allocates
and frees the same large tensors every time (activations, flattened gradient buckets, ZeRO's partitions), so
each step page-faults in, and the kernel zero-fills, memory it released a moment before: on the benchmark
machine that was a quarter of a Faster R-CNN step (benchmarks/FINDINGS.md). `mallopt(M_MMAP_MAX, 0)` serves
every allocation from the heap and `mallopt(M_TRIM_THRESHOLD, max)` keeps its free memory, so after the first
steps no allocation touches the kernel. The price is that a process's resident memory does not shrink again
below its peak. Processes forked later (data-loader workers) inherit the setting.
"""

from __future__ import annotations

import ctypes
import platform

# glibc's <malloc.h> parameter numbers
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1


def _glibc() -> ctypes.CDLL | None:
    """This process's C library when it is glibc (mallopt's parameters are glibc's), else None."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(None)


def retain_freed_memory() -> str:
    """Serve every allocation of this process from malloc's heap and never trim it; returns a log line."""
    libc = _glibc()
    if libc is None:
        return "malloc: system defaults (not glibc)"
    ok = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, _INT_MAX) == 1
    if not ok:
        return "malloc: system defaults (glibc refused mallopt)"
    return "malloc: freed memory kept for reuse (no mmap per allocation, no heap trimming; train.cpu.malloc)"


def choose_malloc(choice: str, device_type: str) -> str:
    """Apply `train.cpu.malloc` in this process (CPU accelerator only); returns a line saying what is in use."""
    if device_type != "cpu":
        return "malloc: system defaults (GPU run)"
    if choice == "system":
        return "malloc: system defaults (train.cpu.malloc=system)"
    return retain_freed_memory()
