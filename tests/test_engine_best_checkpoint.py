"""The checkpoint hook names the best checkpoint: the first one saved after the evaluation with the best AP, so
the protected tag always names a checkpoint that exists."""

from __future__ import annotations

from pathlib import Path

from dsdet.engine.checkpoint import Checkpointer, Storage
from dsdet.engine.hooks import CheckpointHook
from dsdet.engine.trainer import TrainState


def hook(saved_at: int | None) -> CheckpointHook:
    checkpointer = Checkpointer(Path("unused"), Storage(key=0, index=0, size=1), keep_last=1, run_info={})
    checkpoints = CheckpointHook(checkpointer, None, rng_state=dict)
    checkpoints.saved_at = saved_at
    return checkpoints


def evaluated(ap: float, step: int, best: float | None = None) -> TrainState:
    return TrainState(global_step=step, metrics={"AP": ap}, metrics_step=step, best_metric=best)


def test_the_checkpoint_of_the_evaluated_step_becomes_the_best():
    state = evaluated(0.3, step=10, best=0.2)
    hook(saved_at=5).track_best(state, "step00000010")
    assert (state.best_metric, state.best_tag) == (0.3, "step00000010")


def test_a_save_deferred_past_the_evaluation_is_named_not_the_evaluated_step():
    state = evaluated(0.3, step=10)
    state.global_step = 11  # the epoch ended mid-accumulation: the save waited for step 11
    hook(saved_at=5).track_best(state, "step00000011")
    assert state.best_tag == "step00000011"


def test_worse_or_already_counted_evaluations_change_nothing():
    state = evaluated(0.1, step=10, best=0.2)
    state.best_tag = "step00000005"
    hook(saved_at=5).track_best(state, "step00000010")
    assert (state.best_metric, state.best_tag) == (0.2, "step00000005")
    state = evaluated(0.3, step=10, best=0.2)
    state.best_tag = "step00000005"
    hook(saved_at=10).track_best(state, "step00000012")  # step 10's checkpoint already took this evaluation
    assert state.best_tag == "step00000005"
    state = TrainState(global_step=12)  # resumed: no evaluation in this process yet
    hook(saved_at=None).track_best(state, "step00000012")
    assert state.best_tag is None
