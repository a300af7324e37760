"""Preemption: SIGTERM to the job writes a checkpoint, every rank exits cleanly, and `train.resume: auto` goes on."""

from __future__ import annotations

import signal
import time

import pytest

from dsdet.engine.checkpoint import checkpoints_dir, latest_good
from tests.runners import deepspeed_train, read_jsonl
from tests.scripts.jobs import Job, alive, logged_steps
from tests.test_engine_train import small_run

pytestmark = pytest.mark.distributed


def test_sigterm_checkpoints_then_exits_and_auto_resume_continues(mini_data_dir, tmp_path):
    out = tmp_path / "run"
    # Loader workers and end-of-training evaluation and export are on, as in a real run.
    args = small_run(
        mini_data_dir,
        out,
        "train.max_steps=12",
        "data.num_workers=2",
        "eval.every_epochs=1",
        "train.export_on_finish=true",
    )
    with Job(args, tmp_path / "preempted.log") as job:
        job.wait_until(lambda: len(logged_steps(out)) >= 3, "three optimizer steps")
        everything = job.processes()
        # DeepSpeed's node launcher forwards SIGTERM to each rank (30 s grace each), as on a scheduler's preemption.
        start = time.monotonic()
        job.node_launcher().send_signal(signal.SIGTERM)
        job.wait(timeout=90)
        assert time.monotonic() - start < 60
        assert not alive(everything)
    output = job.output()
    assert "Traceback" not in output, output[-4000:]
    assert "stop requested (SIGTERM)" in output
    stopped_at = logged_steps(out)[-1]
    assert stopped_at < 12
    saved = latest_good(checkpoints_dir(out))
    assert saved is not None and saved.info()["global_step"] == stopped_at, output[-4000:]
    assert not (out / "model.pt").exists()  # an unfinished run is not exported
    evaluated = (
        [row["step"] for row in read_jsonl(out / "metrics.jsonl")] if (out / "metrics.jsonl").exists() else []
    )
    assert all(step % 8 == 0 for step in evaluated), (
        evaluated
    )  # epoch ends only: no evaluation on the way out

    deepspeed_train(args)  # train.resume defaults to auto
    steps = logged_steps(out)
    assert steps[steps.index(stopped_at) + 1 :] == list(range(stopped_at + 1, 13))
    assert latest_good(checkpoints_dir(out)).info()["global_step"] == 12
    assert (out / "model.pt").is_file()
