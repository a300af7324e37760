"""The README's main job, as written: `make train` trains, evaluates, checkpoints and exports on 2 ranks."""

from __future__ import annotations

import json

import pytest

from dsdet.engine.checkpoint import checkpoints_dir, latest_good
from tests.runners import REPO, read_jsonl, run

pytestmark = pytest.mark.distributed


@pytest.mark.timeout(1800)
def test_make_train(default_data_dir, tmp_path):
    out = tmp_path / "default"
    proc = run(["make", "-C", str(REPO), "train", f"ARGS=train.output_dir={out}"], timeout=1800)
    for printed in ("Training finished.", "checkpoint", "exported_model", "tensorboard", "metrics_file"):
        assert printed in proc.stdout, proc.stdout[-2000:]
    last_lines = [line for line in proc.stdout.splitlines() if not line.startswith("make")][-3:]  # not make -C's
    assert last_lines[0].startswith("What to expect: the default experiment"), last_lines

    summary = json.loads((out / "summary.json").read_text())
    assert (out / "model.pt").is_file() and summary["exported_model"] == str(out / "model.pt")
    assert latest_good(checkpoints_dir(out)) is not None
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    evaluations = read_jsonl(out / "metrics.jsonl")
    assert [e["epoch"] for e in evaluations] == list(range(1, 13))  # mAP after every epoch
    # a detector that visibly works (README: about AP 0.31, AP50 0.61 on this machine)
    assert evaluations[-1]["AP"] >= 0.10 and evaluations[-1]["AP50"] >= 0.30, evaluations[-1]
