"""Per-rank model-state memory, checked against numbers computed by hand from the ZeRO paper's formulas."""

from __future__ import annotations

import pytest

from dsdet.config import MemoryEstimate, estimate_for_config, estimate_memory, generate_deepspeed_config
from dsdet.errors import DsdetError

PSI = 1_000_000


@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        # mixed-precision Adam, 4 ranks: 2Ψ weights, 2Ψ gradients, 12Ψ optimizer states
        (0, MemoryEstimate(2_000_000, 2_000_000, 12_000_000, 0)),
        (1, MemoryEstimate(2_000_000, 2_000_000, 3_000_000, 0)),
        (2, MemoryEstimate(2_000_000, 500_000, 3_000_000, 0)),
        (3, MemoryEstimate(500_000, 500_000, 3_000_000, 0)),
    ],
)
def test_mixed_precision_adam_by_stage(stage, expected):
    estimate = estimate_memory(PSI, world_size=4, zero_stage=stage, mixed_precision=True)
    assert estimate == expected
    assert estimate.accelerator_total == expected.parameters + expected.gradients + expected.optimizer_states


def test_zero_paper_example_7_5b_parameters_on_64_gpus():
    """The ZeRO paper's Figure 1: Ψ = 7.5B, N_d = 64 gives 120 GB, 31.4 GB, 16.6 GB and 1.9 GB per GPU."""
    psi = 7_500_000_000
    totals = [
        estimate_memory(psi, world_size=64, zero_stage=s, mixed_precision=True).accelerator_total
        for s in range(4)
    ]
    assert [round(t / 1e9, 1) for t in totals] == [120.0, 31.4, 16.6, 1.9]


def test_fp32_adam_and_sgd():
    assert estimate_memory(PSI, zero_stage=0) == MemoryEstimate(4_000_000, 4_000_000, 8_000_000, 0)
    assert estimate_memory(PSI, optimizer="SGD") == MemoryEstimate(4_000_000, 4_000_000, 4_000_000, 0)
    # ZeRO's optimizers keep an fp32 partition of the weights next to fp32 model weights too
    assert estimate_memory(PSI, world_size=2, zero_stage=1) == MemoryEstimate(4_000_000, 4_000_000, 6_000_000, 0)
    assert estimate_memory(PSI, world_size=2, zero_stage=3) == MemoryEstimate(2_000_000, 2_000_000, 6_000_000, 0)
    assert estimate_memory(
        PSI, world_size=2, zero_stage=2, optimizer="sgd", mixed_precision=True
    ) == MemoryEstimate(2_000_000, 1_000_000, 4_000_000, 0)


def test_offload_moves_states_off_the_accelerator():
    estimate = estimate_memory(
        PSI, world_size=2, zero_stage=3, mixed_precision=True, offload_optimizer=True, offload_param=True
    )
    assert estimate == MemoryEstimate(0, 1_000_000, 0, 1_000_000 + 6_000_000)
    # parameter offload only exists at stage 3
    assert estimate_memory(PSI, zero_stage=2, offload_param=True).parameters == 4_000_000


def test_estimate_for_a_config_reads_stage_precision_and_offload():
    config = generate_deepspeed_config(["zero2_offload", "fp16"])
    assert estimate_for_config(config, PSI, world_size=4) == MemoryEstimate(2_000_000, 500_000, 0, 3_000_000)
    # bf16 autocast keeps fp32 weights and gradients
    config = generate_deepspeed_config(["zero2_offload", "bf16"])
    assert estimate_for_config(config, PSI, world_size=4) == MemoryEstimate(4_000_000, 1_000_000, 0, 3_000_000)
    # the config names no optimizer: dsdet's SGD keeps one momentum buffer (4 + 4 master bytes), not Adam's two
    assert estimate_for_config(config, PSI, world_size=4, optimizer="sgd").offloaded == 2_000_000


def test_bad_inputs_are_refused():
    with pytest.raises(DsdetError, match="zero_stage 0-3"):
        estimate_memory(PSI, zero_stage=4)
    with pytest.raises(DsdetError, match="world_size >= 1"):
        estimate_memory(PSI, world_size=0)
