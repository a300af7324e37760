"""Per-rank memory of model states (parameters, gradients, optimizer states) under ZeRO, as in the ZeRO paper."""

from __future__ import annotations

import math
from dataclasses import dataclass

from dsdet.config.deepspeed import DeepSpeedConfig
from dsdet.errors import DsdetError

# fp32 state kept per parameter by the optimizer: Adam-like two moments, SGD one momentum buffer.
OPTIMIZER_STATE_BYTES = {"adam": 8, "adamw": 8, "lamb": 8, "sgd": 4}
FP32_MASTER_BYTES = (
    4  # the fp32 copy of the weights an optimizer wrapper keeps (ZeRO paper's K = 12 for Adam)
)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per rank of model states; activations and communication buffers are not included."""

    parameters: int
    gradients: int
    optimizer_states: int
    offloaded: int  # bytes per rank held in CPU (or NVMe) memory instead of the accelerator

    @property
    def accelerator_total(self) -> int:
        """Bytes per rank left on the accelerator."""
        return self.parameters + self.gradients + self.optimizer_states


def estimate_memory(
    num_parameters: int,
    *,
    world_size: int = 1,
    zero_stage: int = 0,
    mixed_precision: bool = False,
    optimizer: str = "adam",
    offload_optimizer: bool = False,
    offload_param: bool = False,
) -> MemoryEstimate:
    """Model-state bytes per rank for Ψ = num_parameters over N = world_size data-parallel ranks.

    Mixed precision: 2Ψ fp16/bf16 weights + 2Ψ gradients + KΨ optimizer states (K = 12 for Adam: fp32 weights,
    momentum, variance). fp32 at stage 0: 4Ψ + 4Ψ + 8Ψ (the optimizer steps the weights in place); fp32 at
    stages 1-3: 4Ψ + 4Ψ + 12Ψ, because DeepSpeed's ZeRO optimizers keep their own fp32 partition of the weights
    even when the model's are fp32 (measured: docs/BENCHMARKS.md). Stage 1 divides the optimizer states by N,
    stage 2 also the gradients, stage 3 also the weights. Offloading moves the optimizer states (or, at stage 3,
    the weights) off the accelerator."""
    if num_parameters < 0 or world_size < 1 or zero_stage not in (0, 1, 2, 3):
        raise DsdetError(
            f"memory estimate needs num_parameters >= 0, world_size >= 1 and zero_stage 0-3, "
            f"got {num_parameters}, {world_size}, {zero_stage}"
        )
    weight_bytes = 2 if mixed_precision else 4
    state_bytes = OPTIMIZER_STATE_BYTES.get(optimizer.lower(), 8) + (
        FP32_MASTER_BYTES if mixed_precision or zero_stage >= 1 else 0
    )

    def per_rank(bytes_per_param: int, partitioned: bool) -> int:
        total = bytes_per_param * num_parameters
        return math.ceil(total / world_size) if partitioned else total

    parameters = per_rank(weight_bytes, zero_stage >= 3)
    gradients = per_rank(weight_bytes, zero_stage >= 2)
    optimizer_states = per_rank(state_bytes, zero_stage >= 1)
    params_away = offload_param and zero_stage == 3
    return MemoryEstimate(
        parameters=0 if params_away else parameters,
        gradients=gradients,
        optimizer_states=0 if offload_optimizer else optimizer_states,
        offloaded=(parameters if params_away else 0) + (optimizer_states if offload_optimizer else 0),
    )


def estimate_for_config(
    config: DeepSpeedConfig, num_parameters: int, world_size: int, optimizer: str | None = None
) -> MemoryEstimate:
    """estimate_memory with the stage, precision, optimizer and offload of a DeepSpeed config; `optimizer` is the
    one dsdet builds when the config names none (Adam assumed when neither says)."""
    return estimate_memory(
        num_parameters,
        world_size=world_size,
        zero_stage=config.zero_stage,
        mixed_precision=config.precision in ("fp16", "bf16"),
        optimizer=config.optimizer_type or optimizer or "adam",
        offload_optimizer=config.offload_device("offload_optimizer") != "none",
        offload_param=config.offload_device("offload_param") != "none",
    )
