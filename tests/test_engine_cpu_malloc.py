"""train.cpu.malloc: with "retain", a process that allocates and frees the same large tensors every step stops
page-faulting after a few steps; glibc's defaults fault the whole tensor in again every time."""

from __future__ import annotations

import json
import sys

from dsdet.engine.cpu.malloc import choose_malloc
from tests.runners import run

# A training step in miniature: allocate 64 MiB, write it, free it; count each step's minor page faults.
STEPS = """
import json, resource, sys
import torch
from dsdet.engine.cpu.malloc import choose_malloc
line = choose_malloc(sys.argv[1], "cpu")
STEPS = int(sys.argv[2])
faults = []
for step in range(STEPS):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(16 * 2**20, dtype=torch.float32).fill_(1.0)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"line": line, "faults": faults}))
"""
PAGES_PER_STEP = 64 * 2**20 // 4096


def steps(choice: str) -> dict:
    """Page faults of each miniature step in a fresh process with `train.cpu.malloc=choice`."""
    return json.loads(run([sys.executable, "-c", STEPS, choice, "16"]).stdout.strip().splitlines()[-1])


def test_retain_stops_page_faults_after_a_few_steps():
    found = steps("retain")
    assert found["line"].startswith("malloc: freed memory kept for reuse")
    assert found["faults"][0] > PAGES_PER_STEP // 2  # the first step brings the pages in
    # torch allocates 64-byte aligned, so a freed tensor's chunk is a few bytes short of the next request until
    # enough freed chunks have merged (7 steps here); from then on no step faults
    assert max(found["faults"][-4:]) < PAGES_PER_STEP // 100, found["faults"]


def test_system_defaults_fault_every_step_in_again():
    found = steps("system")
    assert found["line"] == "malloc: system defaults (train.cpu.malloc=system)"
    assert min(found["faults"][-4:]) > PAGES_PER_STEP // 2, found["faults"]


def test_gpu_runs_keep_the_defaults():
    assert choose_malloc("retain", "cuda") == "malloc: system defaults (GPU run)"
