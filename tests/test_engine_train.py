"""Real 2-rank DeepSpeed training on CPU/gloo: ZeRO stages, resume after a crash, export and eval."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from dsdet.engine.checkpoint import checkpoints_dir, latest_good
from dsdet.engine.export import consolidated_state_dict
from tests.runners import BIN, deepspeed_train, free_port, read_jsonl

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
    "zero3": ["deepspeed.zero_optimization.stage=3"],
    "zero2_offload": ["deepspeed.zero_optimization={stage: 2, offload_optimizer: {device: cpu}}"],
    "zero3_offload": [
        "deepspeed.zero_optimization={stage: 3, offload_optimizer: {device: cpu}, offload_param: {device: cpu}}"
    ],
}


def test_zero_stages_and_offload_train_and_agree(mini_data_dir, tmp_path):
    losses = {}
    for name, overrides in ZERO_SETUPS.items():
        out = tmp_path / name
        deepspeed_train(small_run(mini_data_dir, out, *overrides))
        losses[name] = [row["loss"] for row in read_jsonl(out / "train_log.jsonl")]
        assert len(losses[name]) == 8
        ref = latest_good(checkpoints_dir(out))
        assert ref is not None and ref.info()["global_step"] == 8
        assert consolidated_state_dict(ref)  # every stage exports
    first, last = sum(losses["zero0"][:2]) / 2, sum(losses["zero0"][-2:]) / 2
    assert last < first, losses["zero0"]
    for name in ZERO_SETUPS:
        assert losses[name] == pytest.approx(losses["zero0"], rel=2e-3, abs=1e-4), (name, losses[name])


def _launch(args: list[str]) -> subprocess.Popen:
    cmd = [
        BIN / "deepspeed",
        "--num_gpus",
        "2",
        "--master_port",
        str(free_port()),
        "--module",
        "dsdet.train",
        *args,
    ]
    return subprocess.Popen(
        [str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def test_killed_run_resumes_to_identical_weights(mini_data_dir, tmp_path):
    common = ("train.max_steps=12", "train.checkpoint_every_steps=2", "train.keep_last=2")
    straight = tmp_path / "straight"
    deepspeed_train(small_run(mini_data_dir, straight, *common))

    crashed = tmp_path / "crashed"
    proc = _launch(small_run(mini_data_dir, crashed, *common))
    marker = checkpoints_dir(crashed) / "step00000006" / "dsdet_complete.json"
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert marker.exists(), "the run never reached step 6"
    resumed_from = latest_good(checkpoints_dir(crashed)).info()["global_step"]
    assert 6 <= resumed_from < 12
    deepspeed_train(small_run(mini_data_dir, crashed, *common))  # train.resume defaults to auto

    expected = consolidated_state_dict(latest_good(checkpoints_dir(straight)))
    got = consolidated_state_dict(latest_good(checkpoints_dir(crashed)))
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    assert len(list(checkpoints_dir(crashed).glob("step*"))) <= 2  # keep_last
