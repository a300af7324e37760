"""Deterministic resume: a run killed after a checkpoint and auto-resumed ends with exactly the weights of an
uninterrupted run (CPU, fp32, same world size, 2 loader workers per rank drawing augmentations): killed
mid-epoch, after an epoch end and between micro-batches."""

from __future__ import annotations

import pytest
import torch

from dsdet.engine.checkpoint import checkpoints_dir, consolidated_state_dict, latest_good, list_tags
from tests.runners import deepspeed_train
from tests.scripts.jobs import Job
from tests.test_engine_train import small_run

pytestmark = pytest.mark.distributed


def assert_kill_and_resume_identical(data_root, tmp_path, kill_after: str, *overrides: str) -> dict:
    """SIGKILL a run once checkpoint `kill_after` is complete, auto-resume it, compare with a straight run;
    return the run info of the checkpoint it resumed from. The batches after a resume reach other loader
    workers than in the straight run: only per-sample augmentation seeds make them agree."""
    overrides = ("data.num_workers=2", *overrides)
    straight = tmp_path / "straight"
    deepspeed_train(small_run(data_root, straight, *overrides))
    crashed = tmp_path / "crashed"
    with Job(small_run(data_root, crashed, *overrides), tmp_path / "crashed.log") as job:
        marker = checkpoints_dir(crashed) / kill_after / "dsdet_complete.json"
        job.wait_until(marker.exists, f"checkpoint {kill_after}")
    resumed_from = latest_good(checkpoints_dir(crashed))
    assert resumed_from.tag == kill_after, "the run went past the next checkpoint before it was killed"
    resumed_info = resumed_from.info()
    deepspeed_train(small_run(data_root, crashed, *overrides))  # train.resume defaults to auto

    expected = consolidated_state_dict(latest_good(checkpoints_dir(straight)))
    got = consolidated_state_dict(latest_good(checkpoints_dir(crashed)))
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    return resumed_info


def test_killed_mid_epoch_resumes_exactly(mini_data_dir, tmp_path):
    # 8 steps per epoch, checkpoints every 5 steps and at epoch ends: killed during steps 6-8 of epoch 0.
    overrides = ("train.max_steps=12", "train.checkpoint_every_steps=5", "train.keep_last=2")
    resumed_from = assert_kill_and_resume_identical(mini_data_dir, tmp_path, "step00000005", *overrides)
    assert resumed_from["epoch"] == 0
    assert len(list_tags(checkpoints_dir(tmp_path / "crashed"))) == 2  # keep_last


def test_killed_after_an_epoch_end_checkpoint_resumes_exactly(mini_data_dir, tmp_path):
    # 8 steps per epoch, checkpoints at epoch ends only: killed during steps 9-14 of epoch 2.
    resumed_from = assert_kill_and_resume_identical(
        mini_data_dir, tmp_path, "step00000008", "train.max_steps=14"
    )
    assert resumed_from["epoch"] == 1


def test_killed_between_micro_batches_resumes_exactly(mini_data_dir, tmp_path):
    # 8 micro-batches per rank and epoch, 3 per step: each epoch is trimmed to 6 (2 whole steps), so epoch 1 ends
    # with step 2 and its checkpoint. The kill then lands between the micro-batches of steps 3-5.
    overrides = ("train.grad_accum_steps=3", "train.max_steps=5")
    resumed_from = assert_kill_and_resume_identical(mini_data_dir, tmp_path, "step00000002", *overrides)
    assert (resumed_from["epoch"], resumed_from["global_step"]) == (1, 2)
