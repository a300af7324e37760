"""The default training run on two hosts through `dsdet launch` (pdsh over our sshd), then resumed from its checkpoint."""

from __future__ import annotations

import pytest

from dsdet.engine.checkpoint import checkpoints_dir, latest_good
from tests.runners import read_jsonl
from tests.test_engine_train import small_run

pytest_plugins = ["tests.conftest_multihost"]
pytestmark = pytest.mark.distributed


def test_two_hosts_train_then_resume(ssh_cluster, mini_data_dir, tmp_path):
    out = tmp_path / "run"
    for steps in (2, 4):
        job = ssh_cluster.dsdet_launch(
            ["train", *small_run(mini_data_dir, out, f"train.max_steps={steps}")], cwd=tmp_path, timeout=300
        )
        assert job.returncode == 0, job.tail()
        assert latest_good(checkpoints_dir(out)).info()["global_step"] == steps
    assert [row["step"] for row in read_jsonl(out / "train_log.jsonl")] == [
        1,
        2,
        3,
        4,
    ]  # 3 and 4 after the resume
    assert "127.0.0.3: " in job.output  # rank 1 ran on the second host
