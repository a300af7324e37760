"""Real 2-rank DeepSpeed training on CPU/gloo: every ZeRO stage and offload trains, agrees and exports
(resume after a crash: test_reliability_resume.py)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from dsdet.engine.checkpoint import checkpoints_dir, consolidated_state_dict, latest_good
from dsdet.engine.cpu.shared_memory import segment_path
from tests.runners import deepspeed_train, read_jsonl

pytestmark = pytest.mark.distributed


def small_run(data_root: Path, out: Path, *extra: str) -> list[str]:
    """Overrides for a few quick steps of tinyssd on the mini split (8 steps per epoch on 2 ranks)."""
    return [
        f"data.root={data_root}",
        f"train.output_dir={out}",
        "model.name=tinyssd",
        "model.kwargs={image_size: 128}",
        "train.batch_size=2",
        "train.epochs=100",
        "train.max_steps=8",
        "train.lr=0.01",
        "train.log_every_steps=1",
        "train.export_on_finish=false",
        "eval.every_epochs=0",
        "data.num_workers=0",
        *extra,
    ]


ZERO_SETUPS = {
    "zero0": ["deepspeed.zero_optimization.stage=0"],
    "zero1": ["deepspeed.zero_optimization.stage=1"],
    "zero2": ["deepspeed.zero_optimization.stage=2"],
    # dsdet's CPU speed-ups off: gloo collectives and glibc's default malloc
    "zero2_plain_cpu": [
        "deepspeed.zero_optimization.stage=2",
        "train.cpu.collectives=gloo",
        "train.cpu.malloc=system",
    ],
    "zero3": ["deepspeed.zero_optimization.stage=3"],
    "zero2_offload": ["deepspeed.zero_optimization={stage: 2, offload_optimizer: {device: cpu}}"],
    "zero3_offload": [
        "deepspeed.zero_optimization={stage: 3, offload_optimizer: {device: cpu}, offload_param: {device: cpu}}"
    ],
}


PARTITIONED = re.compile(r"model built partitioned, (\d+) of (\d+) parameter elements")


def test_zero_stages_and_offload_train_and_agree(mini_data_dir, tmp_path):
    # what a job killed during start-up leaves: an unmapped, old DeepSpeed all-reduce segment
    orphan = segment_path("dsdet-train-test", 1, 0)
    orphan.write_bytes(b"\0" * 4096)
    os.utime(orphan, (0, 0))
    losses = {}
    for name, overrides in ZERO_SETUPS.items():
        out = tmp_path / name
        proc = deepspeed_train(small_run(mini_data_dir, out, *overrides))
        if name == "zero0":  # the first run on the node removes it
            assert (
                not orphan.exists() and "that killed jobs had left in /dev/shm" in proc.stdout + proc.stderr
            )
        # 2 ranks share this node's cores instead of each taking all of them
        threads = int(os.environ.get("OMP_NUM_THREADS", 0)) or max(1, len(os.sched_getaffinity(0)) // 2)
        assert f"2 ranks, {threads} torch threads each" in proc.stdout + proc.stderr
        plain_cpu = name.endswith("plain_cpu")
        collectives = "gloo (train.cpu.collectives=gloo)" if plain_cpu else "DeepSpeed's shared-memory"
        assert f"collectives: {collectives}" in proc.stdout + proc.stderr
        malloc = "system defaults (train.cpu.malloc=system)" if plain_cpu else "freed memory kept for reuse"
        assert f"malloc: {malloc}" in proc.stdout + proc.stderr
        if name.startswith("zero3"):  # built partitioned: each rank holds about half
            local, total = map(int, PARTITIONED.search(proc.stdout + proc.stderr).groups())
            assert local < 0.75 * total, (local, total)
        losses[name] = [row["loss"] for row in read_jsonl(out / "train_log.jsonl")]
        assert len(losses[name]) == 8
        ref = latest_good(checkpoints_dir(out))
        assert ref is not None and ref.info()["global_step"] == 8
        assert consolidated_state_dict(ref)  # every stage exports
    first, last = sum(losses["zero0"][:2]) / 2, sum(losses["zero0"][-2:]) / 2
    assert last < first, losses["zero0"]
    for name in ZERO_SETUPS:
        assert losses[name] == pytest.approx(losses["zero0"], rel=2e-3, abs=1e-4), (name, losses[name])
    # the shared-memory kernel sums exactly as gloo does, and the malloc setting only moves memory: the same
    # run, bit for bit
    assert losses["zero2_plain_cpu"] == losses["zero2"]
    plain, tuned = (
        consolidated_state_dict(latest_good(checkpoints_dir(tmp_path / n)))
        for n in ("zero2_plain_cpu", "zero2")
    )
    assert all(torch.equal(plain[key], tuned[key]) for key in tuned)
