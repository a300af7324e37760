"""Non-finite loss policy, with a real NaN: a learning rate of 1e30 blows the weights up after the first update.

fp16 overflow is DeepSpeed's loss scaler's job and needs a GPU (fp16 does not run on DeepSpeed's CPU accelerator).
"""

from __future__ import annotations

import re
import sys

import pytest

from dsdet.engine.checkpoint import checkpoints_dir, latest_good
from tests.runners import deepspeed_train, run
from tests.test_engine_train import small_run

pytestmark = pytest.mark.distributed

EXPLODE = ("train.lr=1e30", "train.epochs=1", "train.max_steps=null")


def test_stop_names_the_step_and_images_on_every_rank(mini_data_dir, tmp_path):
    proc = deepspeed_train(
        small_run(mini_data_dir, tmp_path / "run", *EXPLODE, "train.nonfinite_loss=stop"), check=False
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("dsdet: error")]
    assert errors, proc.stderr[-3000:]
    pattern = r"dsdet: error \(rank \d\): non-finite loss in step (\d+) \(epoch 0, batch \d+\) on (images \[\d+, \d+\]|another rank)"
    assert all(re.match(pattern, line) for line in errors), errors
    assert any("on images [" in line for line in errors)
    assert "lower train.lr or set train.nonfinite_loss=skip" in errors[0]


def test_skip_counts_each_skipped_micro_batch_and_finishes(mini_data_dir, tmp_path):
    out = tmp_path / "run"
    proc = run(
        [
            sys.executable,
            "-m",
            "dsdet.train",
            *small_run(mini_data_dir, out, *EXPLODE, "train.nonfinite_loss=skip"),
        ]
    )
    skipped = re.findall(
        r"non-finite loss in step \d+ .* on images \[\d+, \d+\]: .*micro-batch skipped \((\d+) so far\)",
        proc.stderr,
    )
    assert skipped and [int(n) for n in skipped] == list(range(1, len(skipped) + 1)), proc.stderr[-3000:]
    final = latest_good(checkpoints_dir(out))
    # 16 micro-batches in the epoch on one rank: every one not skipped made an optimizer step.
    assert final.info()["global_step"] + len(skipped) == 16


def test_pipeline_stops_on_a_nonfinite_step_it_cannot_skip(mini_data_dir, tmp_path):
    # DeepSpeed's train_batch steps before the loss is known: even with skip, the run stops with the reason and the
    # last checkpoint (none here: step 1 already diverged) is never overwritten with non-finite weights.
    out = tmp_path / "run"
    proc = deepspeed_train(
        small_run(
            mini_data_dir,
            out,
            *EXPLODE,
            "train.nonfinite_loss=skip",
            "deepspeed.pipeline.stages=2",
            "deepspeed.zero_optimization.stage=1",
        ),
        check=False,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("dsdet: error")]
    assert errors and all(
        "under pipeline stages: DeepSpeed's train_batch has already applied it" in e for e in errors
    )
    assert latest_good(checkpoints_dir(out)) is None
