"""DeepSpeed's `zero_optimization` section with its `offload_optimizer` and `offload_param` blocks."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from dsdet.config.base import Auto, Float, Int, StrictModel

Count = Annotated[Int, Field(ge=0)]
Elements = Annotated[Int, Field(ge=1)]
OffloadDevice = Literal["none", "cpu", "nvme"]


class _Offload(StrictModel):
    device: OffloadDevice = Field("none", description="Where to offload: none, cpu or nvme.")
    nvme_path: str | None = Field(
        None, description="Directory on the NVMe device (needed when device is nvme)."
    )
    pin_memory: bool = Field(True, description="Use page-locked CPU memory for faster transfers.")

    @model_validator(mode="after")
    def _nvme_needs_path(self) -> _Offload:
        if self.device == "nvme" and not self.nvme_path:
            raise ValueError("device nvme needs nvme_path")
        return self

    @property
    def active(self) -> bool:
        """Whether this block moves anything off the accelerator."""
        return self.device != "none"


class OffloadParamConfig(_Offload):
    """Offload parameters to CPU or NVMe (ZeRO stage 3 only)."""

    buffer_count: Count = Field(5, description="Buffers in the NVMe parameter buffer pool.")
    buffer_size: Elements = Field(100_000_000, description="Size of each NVMe parameter buffer (elements).")
    max_in_cpu: Count = Field(1_000_000_000, description="Parameter elements kept in CPU memory with NVMe.")


class OffloadOptimizerConfig(_Offload):
    """Offload optimizer states (and the optimizer step) to CPU or NVMe (ZeRO stage 1-3)."""

    buffer_count: Count = Field(4, description="Buffers in the NVMe optimizer-state buffer pool.")
    fast_init: bool = Field(False, description="Fast optimizer initialization when offloading to NVMe.")
    ratio: Annotated[Float, Field(ge=0, le=1)] = Field(
        1.0, description="Share of optimizer states offloaded; below 1 needs stage 3."
    )


class ZeroConfig(StrictModel):
    """ZeRO partitions optimizer states (stage 1), gradients (2) and parameters (3) across data-parallel ranks."""

    stage: Literal[0, 1, 2, 3] = Field(
        0, description="0 off, 1 optimizer states, 2 + gradients, 3 + parameters."
    )
    offload_optimizer: OffloadOptimizerConfig | None = Field(None, description="Optimizer-state offload.")
    offload_param: OffloadParamConfig | None = Field(None, description="Parameter offload (stage 3).")
    overlap_comm: bool = Field(False, description="Overlap gradient reduction with the backward pass.")
    contiguous_gradients: bool = Field(
        True, description="Copy gradients into one buffer as they are produced."
    )
    reduce_scatter: bool = Field(
        True, description="Average gradients with reduce-scatter instead of all-reduce."
    )
    reduce_bucket_size: Elements | Auto = Field(
        500_000_000, description="Elements reduced at a time; 'auto' is sized from the parameter count."
    )
    allgather_partitions: bool = Field(
        True, description="All-gather updated partitions instead of broadcasts."
    )
    allgather_bucket_size: Elements | Auto = Field(
        500_000_000, description="Elements all-gathered at a time; 'auto' is sized from the parameter count."
    )
    stage3_prefetch_bucket_size: Count | Auto = Field(
        50_000_000,
        description="Parameter elements fetched ahead of use (stage 3); 'auto' is sized from the model.",
    )
    stage3_param_persistence_threshold: Count | Auto = Field(
        100_000,
        description="Parameters smaller than this stay whole (stage 3); 'auto' is sized from the model.",
    )
    stage3_max_live_parameters: Count = Field(
        1_000_000_000, description="Parameter elements resident per GPU before release (stage 3)."
    )
    stage3_max_reuse_distance: Count = Field(
        1_000_000_000, description="Keep a parameter that is reused within this many elements (stage 3)."
    )
    stage3_gather_16bit_weights_on_model_save: bool = Field(
        False, description="Gather the full 16-bit weights when saving the model (stage 3)."
    )
    sub_group_size: Count = Field(1_000_000_000, description="Tile size of the optimizer step (offload).")
    round_robin_gradients: bool = Field(False, description="Parallelize gradient copies to CPU (stage 1-2).")
    load_from_fp32_weights: bool = Field(True, description="Restore fp32 master weights from the checkpoint.")
    elastic_checkpoint: bool = Field(False, description="Legacy elastic checkpoints (stage 1-2).")
