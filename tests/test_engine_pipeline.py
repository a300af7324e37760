"""Pipeline parallelism end to end through dsdet.train: 2 stages on 2 ranks, evaluation and export."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from dsdet.engine.checkpoint import checkpoints_dir, consolidated_state_dict, latest_good
from dsdet.models import build_model
from tests.runners import deepspeed_train, dsdet, read_jsonl, run
from tests.test_engine_train import small_run

pytestmark = pytest.mark.distributed


def test_two_stage_pipeline_trains_evaluates_and_exports(mini_data_dir, tmp_path):
    common = (
        "deepspeed.zero_optimization.stage=1",
        "train.max_steps=6",
        "eval.every_epochs=1",
        "train.epochs=1",
        # Stage boundaries send NCHW tensors, so a channels-last model sums some BatchNorm statistics in
        # another order than the plain run: equal within float noise, which 6 steps at lr 0.01 amplify.
        "model.channels_last=false",
    )
    out = tmp_path / "pipe"
    deepspeed_train(small_run(mini_data_dir, out, "deepspeed.pipeline.stages=2", *common))
    # one pipeline replica sees the data a single plain process sees: the losses must agree
    plain = tmp_path / "plain"
    # with one torch thread, as each pipeline rank has: another thread count sums in another order
    run(
        [sys.executable, "-m", "dsdet.train", *small_run(mini_data_dir, plain, *common)],
        env={"OMP_NUM_THREADS": "1"},
    )
    losses = [row["loss"] for row in read_jsonl(out / "train_log.jsonl")]
    expected = [row["loss"] for row in read_jsonl(plain / "train_log.jsonl")]
    assert len(losses) == 6 and losses == pytest.approx(expected, rel=1e-4)

    ref = latest_good(checkpoints_dir(out))
    state = consolidated_state_dict(ref)
    build_model("tinyssd", 6, image_size=128).load_state_dict(state, strict=True)

    # the plain model evaluated from the checkpoint scores exactly what the pipelined run measured
    trained_metrics = read_jsonl(out / "metrics.jsonl")[-1]
    metrics_file = tmp_path / "eval.json"
    dsdet("eval", f"data.root={mini_data_dir}", "--checkpoint", str(out), "--json", str(metrics_file))
    evaluated = json.loads(metrics_file.read_text())
    assert {k: evaluated[k] for k in ("AP", "AP50", "AR100")} == {
        k: trained_metrics[k] for k in ("AP", "AP50", "AR100")
    }
    assert torch.isfinite(torch.tensor(list(evaluated.values()))).all()


def test_pipeline_with_accumulation_not_dividing_the_epoch_ends_its_epochs(mini_data_dir, tmp_path):
    # 16 batches per epoch on the one data-parallel replica, 3 micro-batches per step: each epoch is trimmed to
    # 15 (5 whole steps) and ends; each epoch line shows that epoch's evaluation, as metrics.jsonl records it.
    out = tmp_path / "pipe"
    proc = deepspeed_train(
        small_run(
            mini_data_dir,
            out,
            "deepspeed.pipeline.stages=2",
            "deepspeed.zero_optimization.stage=1",
            "train.grad_accum_steps=3",
            "train.max_steps=null",
            "train.epochs=2",
            "eval.every_epochs=1",
        ),
        timeout=300,
    )
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [(row["epoch"], row["step"]) for row in metrics] == [(1, 5), (2, 10)]
    epoch_lines = [line for line in proc.stdout.splitlines() + proc.stderr.splitlines() if "| step " in line]
    assert len(epoch_lines) == 2
    for line, row in zip(epoch_lines, metrics, strict=True):
        assert f"epoch {row['epoch']}/2 | step {row['step']} |" in line
        assert f"| AP {row['AP']:.3f} | AP50 {row['AP50']:.3f} |" in line
    assert latest_good(checkpoints_dir(out)).tag == "step00000010"
