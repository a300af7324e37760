"""Elastic resume through DeepSpeed's universal checkpoint: ZeRO-2 on 2 ranks -> ZeRO-3 on 1 rank -> ZeRO-1 on
3 ranks, with the learning-rate schedule, the step and the data position carried over; weights exactly."""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch

from dsdet.config import load_experiment, resolve_deepspeed_config
from dsdet.engine.checkpoint import (
    Checkpointer,
    CheckpointRef,
    Storage,
    checkpoints_dir,
    consolidated_state_dict,
    latest_good,
    problem,
)
from dsdet.engine.data import build_data
from dsdet.engine.resume import plan_resume, resume
from dsdet.engine.run import build_optimizer, count_parameters, model_spec
from dsdet.engine.strategy import DeepSpeedStrategy
from dsdet.engine.trainer import Trainer
from dsdet.errors import DsdetError
from tests.runners import deepspeed_train, read_jsonl
from tests.scripts.jobs import Job, logged_steps
from tests.test_engine_train import small_run

pytestmark = pytest.mark.distributed

# One schedule for every launch: it decays each step, so a reset or a shifted schedule shows in the logged lr.
SCHEDULE = (
    "deepspeed.scheduler.type=WarmupDecayLR",
    "train.max_steps=12",
    "train.checkpoint_every_steps=4",
    "train.keep_last=5",
)


def zero(stage: int) -> str:
    return f"deepspeed.zero_optimization.stage={stage}"


def run_until(args: list[str], ranks: int, out, step: int, log) -> None:
    """Train on `ranks` ranks until `step` is logged (the checkpoint before it is complete), then SIGKILL."""
    with Job(args, log, ranks=ranks) as job:
        job.wait_until(lambda: step in logged_steps(out), f"step {step}")


@pytest.fixture(scope="module")
def elastic_run(mini_data_dir, tmp_path_factory):
    """The run dir after ZeRO-2 x 2 ranks (killed after step 6), ZeRO-3 x 1 (killed after 10), ZeRO-1 x 3 (to 12)."""
    tmp = tmp_path_factory.mktemp("elastic")
    out = tmp / "run"
    run_until(small_run(mini_data_dir, out, *SCHEDULE, zero(2)), 2, out, 6, tmp / "a.log")
    assert latest_good(checkpoints_dir(out)).tag == "step00000004"
    run_until(small_run(mini_data_dir, out, *SCHEDULE, zero(3)), 1, out, 10, tmp / "b.log")
    assert latest_good(checkpoints_dir(out)).tag == "step00000008"
    deepspeed_train(small_run(mini_data_dir, out, *SCHEDULE, zero(1)), ranks=3)
    return out


def test_schedule_step_and_data_position_carry_over(elastic_run):
    rows = read_jsonl(elastic_run / "train_log.jsonl")
    launches: list[list[int]] = []  # a launch starts where the logged step goes back
    for row in rows:
        if not launches or row["step"] <= launches[-1][-1]:
            launches.append([])
        launches[-1].append(row["step"])
    first, second, third = launches  # each killed launch may get a step further before the kill lands
    assert first == list(range(1, len(first) + 1)) and len(first) >= 6
    assert second == list(range(5, len(second) + 5)) and len(second) >= 6
    assert third == [9, 10, 11, 12]
    lrs = defaultdict(set)
    for row in rows:
        lrs[row["step"]].add(row["lr"])
    assert all(len(values) == 1 for values in lrs.values()), lrs  # replayed steps see the same lr
    decay = [lrs[step].pop() for step in range(3, 13)]
    assert decay == sorted(decay, reverse=True) and len(set(decay)) == len(decay), decay
    # Samples seen carry over: step 4 on 2 ranks = 16 images = batch 8 of 16 on 1 rank; step 8 there = 24 images
    # = batch 4 of 5 on 3 ranks, so the third launch finishes epoch 0 with step 9 and starts epoch 1 with step 10.
    epochs = {(r["step"], r["epoch"]) for r in rows}
    assert {(8, 0), (9, 0), (10, 1)} <= epochs and (10, 0) in epochs  # 10 on one rank was still in epoch 0
    final = latest_good(checkpoints_dir(elastic_run))
    assert final.info()["global_step"] == 12
    assert consolidated_state_dict(final)


def test_conversion_is_kept_with_its_checkpoint(elastic_run):
    for tag in ("step00000004", "step00000008"):
        universal = CheckpointRef(checkpoints_dir(elastic_run) / tag, "universal")
        assert problem(universal) is None, tag
        assert not (checkpoints_dir(elastic_run) / tag / "universal.tmp").exists()


def load_elsewhere(data_root, tmp_path, checkpoint: CheckpointRef, env, stage: int) -> DeepSpeedStrategy:
    """Resume `checkpoint` in this process (1 rank, ZeRO `stage`) the way dsdet.train does, without training."""
    exp = load_experiment(
        None, small_run(data_root, tmp_path, *SCHEDULE, zero(stage), f"train.resume={checkpoint.path}")
    )
    data = build_data(exp, 1, 0)
    spec = model_spec(exp, data.num_classes)
    ds_config = resolve_deepspeed_config(
        exp, world_size=1, steps_per_epoch=len(data.train_loader), num_parameters=count_parameters(spec)
    )
    checkpointer = Checkpointer(
        exp.train.output_dir, Storage.of(env, node_local=False), keep_last=1, run_info={}
    )
    plan = plan_resume(exp, env, checkpointer, data.num_classes, ds_config)
    strategy = DeepSpeedStrategy(plan.deepspeed_config(ds_config))
    strategy.prepare(strategy.build(spec), build_optimizer(exp, strategy.ds_config, len(data.train_loader)))
    trainer = Trainer(
        strategy, data.train_loader, data.batch_sampler, epochs=1, max_steps=None, nonfinite_loss="stop"
    )
    resume(trainer, strategy, plan, exp, env, data.batch_size)
    assert trainer.state.global_step == strategy.global_step == checkpoint.info()["global_step"]
    return strategy


@pytest.mark.parametrize("tag", ["step00000004", "step00000008"])  # saved by ZeRO-2 x 2 and ZeRO-3 x 1
def test_weights_and_statistics_load_exactly(elastic_run, mini_data_dir, tmp_path, process_group, tag):
    checkpoint = CheckpointRef(checkpoints_dir(elastic_run), tag)
    strategy = load_elsewhere(mini_data_dir, tmp_path, checkpoint, process_group, stage=1)
    expected = consolidated_state_dict(checkpoint)  # parameters and BatchNorm buffers
    loaded = strategy.module.state_dict()
    assert expected.keys() == loaded.keys()
    for name, value in expected.items():
        assert torch.equal(value, loaded[name].to(value.dtype)), name


def test_zero_stage_0_cannot_take_a_partitioned_checkpoint(
    elastic_run, mini_data_dir, tmp_path, process_group
):
    checkpoint = CheckpointRef(checkpoints_dir(elastic_run), "step00000004")
    with pytest.raises(
        DsdetError, match=r"saved with ZeRO stage 2 on 2 ranks; resuming it with ZeRO stage 0 on 1"
    ):
        load_elsewhere(mini_data_dir, tmp_path, checkpoint, process_group, stage=0)
