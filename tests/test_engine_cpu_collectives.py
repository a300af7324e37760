"""Single-node CPU collectives through DeepSpeed's shared-memory kernel: bit-identical to gloo, only where they
can be, and a rank waiting in the kernel for a dead peer names it and exits (2 real ranks)."""

from __future__ import annotations

import json

import pytest

from dsdet.engine.cpu.flags import cpu_flags
from tests.runners import deepspeed_command, run

pytestmark = pytest.mark.distributed

SCRIPT = ("--module", "tests.scripts.collectives_ds")


def test_routed_collectives_equal_gloo_bit_for_bit(tmp_path):
    proc = run(deepspeed_command(2, *SCRIPT, "compare", tmp_path))
    assert "collectives: DeepSpeed's shared-memory kernel" in proc.stdout, proc.stdout[-2000:]
    # the kernel sums fp32 with AVX2 and bf16/fp16 only with AVX-512BW; other dtypes stay on gloo
    routed = ["float32", "bfloat16", "float16"] if "avx512bw" in cpu_flags() else ["float32"]
    for rank in (0, 1):
        found = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert found["backend"] == "SharedMemoryCollectives"
        assert found["kernel_dtypes"] == routed
        mismatches = [key for key, same in found.items() if key.startswith("all_") and same is not True]
        assert not mismatches, mismatches
        # each routed dtype's all-reduce and 2 all-gathers went through the kernel; the fallbacks did not, and
        # were right
        assert found["kernel_calls"] == 3 * len(routed)
        assert found["kernel_calls_after_fallbacks"] == 3 * len(routed)
        assert found["fallbacks"] == [1.0, 3, [2.0] * 4, [1.0] * 3]


def test_rank_waiting_in_the_kernel_for_a_dead_peer_names_it_and_exits(tmp_path):
    proc = run(deepspeed_command(2, *SCRIPT, "die", tmp_path), check=False, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "dsdet: error (rank 0): rank 1 (pid " in output, output[-3000:]
    assert "waiting for them in a shared-memory collective" in output
    assert "rank 0 left the all-reduce" not in output
