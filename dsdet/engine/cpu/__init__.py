"""Everything dsdet does only on CPU ranks, behind one call (`configure_cpu_ranks`) and one config subsection
(`train.cpu`): torch threads per rank, glibc malloc tuning, DeepSpeed's shared-memory collectives, removing the
/dev/shm segments killed jobs left, the bf16 speed check, and the RoIAlign kernel the model is built with
(`roi_align_kernel`). On a GPU none of it applies."""

from __future__ import annotations

import logging

from deepspeed.accelerator import get_accelerator

from dsdet.config.experiment import CpuSection
from dsdet.engine.cpu.collectives import choose_collectives
from dsdet.engine.cpu.flags import cpu_has_bf16_units
from dsdet.engine.cpu.malloc import choose_malloc
from dsdet.engine.cpu.shared_memory import remove_orphaned_segments
from dsdet.engine.cpu.threads import share_cpu_cores

log = logging.getLogger("dsdet")


def on_cpu() -> bool:
    """Whether DeepSpeed runs this process on its CPU accelerator."""
    return get_accelerator().device_name() == "cpu"


def configure_cpu_ranks(
    settings: CpuSection, *, world_size: int, ranks_on_node: int, first_on_node: bool, precision: str
) -> None:
    """Apply `train.cpu` to this rank after the process group exists (every rank calls it); logs each choice."""
    log.info(choose_collectives(settings.collectives, world_size))
    log.info(choose_malloc(settings.malloc, get_accelerator().device_name()))
    if not on_cpu():
        return
    threads = share_cpu_cores(ranks_on_node)
    log.info("%d ranks, %d torch threads each (OMP_NUM_THREADS sets it)", world_size, threads)
    if first_on_node:
        removed = remove_orphaned_segments()
        if removed.paths:
            log.warning(
                "removed %d DeepSpeed all-reduce segments (%d MiB of RAM) that killed jobs had left in /dev/shm",
                len(removed.paths),
                removed.total_bytes // 2**20,
            )
    if precision == "bf16" and not cpu_has_bf16_units():
        log.warning(
            "train.precision=bf16 on a CPU without AVX-512 BF16 or AMX: torch emulates its bf16 convolutions, "
            "12-18x slower than fp32 on the benchmark machine (benchmarks/FINDINGS.md); fp32 is faster here"
        )


def roi_align_kernel(settings: CpuSection) -> str:
    """The RoIAlign kernel to build Faster/Mask R-CNN with: `train.cpu.roi_align` on CPU ranks, torchvision's
    elsewhere."""
    return settings.roi_align if on_cpu() else "torchvision"
