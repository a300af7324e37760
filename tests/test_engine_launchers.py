"""dsdet.train under every launcher it supports: single process, torchrun, mpirun (mpi4py) and Slurm's variables."""

from __future__ import annotations

import sys

import pytest

from dsdet.engine.checkpoint import checkpoints_dir, latest_good
from tests.runners import free_port, read_jsonl, run, torchrun_command
from tests.test_engine_train import small_run

pytestmark = pytest.mark.distributed
pytest_plugins = ["tests.slurm_cluster"]


SHARED_MEMORY = "collectives: DeepSpeed's shared-memory kernel"


def check_trained(out, steps: int = 2) -> None:
    assert [row["step"] for row in read_jsonl(out / "train_log.jsonl")] == list(range(1, steps + 1))
    assert latest_good(checkpoints_dir(out)).info()["global_step"] == steps


def check_shared_memory_collectives(proc) -> None:
    """Every launcher tells dsdet that both ranks share this node, so gradients skip gloo."""
    assert SHARED_MEMORY in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]


def test_single_plain_process(mini_data_dir, tmp_path):
    out = tmp_path / "single"
    run([sys.executable, "-m", "dsdet.train", *small_run(mini_data_dir, out, "train.max_steps=2")])
    check_trained(out)


def test_dsdet_train_command_is_the_same(mini_data_dir, tmp_path):
    out = tmp_path / "cli"
    run([sys.executable, "-m", "dsdet", "train", *small_run(mini_data_dir, out, "train.max_steps=2")])
    check_trained(out)


def test_torchrun(mini_data_dir, tmp_path):
    out = tmp_path / "torchrun"
    proc = run(torchrun_command(2, "-m", "dsdet.train", *small_run(mini_data_dir, out, "train.max_steps=2")))
    check_trained(out)
    check_shared_memory_collectives(proc)


def test_mpirun_discovers_ranks_through_mpi4py(mini_data_dir, tmp_path):
    out = tmp_path / "mpi"
    env = {
        "OMPI_ALLOW_RUN_AS_ROOT": "1",
        "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        "MASTER_PORT": str(free_port()),
    }
    proc = run(
        [
            "mpirun",
            "-np",
            "2",
            "--oversubscribe",
            "-x",
            "MASTER_PORT",
            "-x",
            "DSDET_DATA_DIR",
            "-x",
            "PATH",
            sys.executable,
            "-m",
            "dsdet.train",
            *small_run(mini_data_dir, out, "train.max_steps=2"),
        ],
        env=env,
    )
    check_trained(out)
    check_shared_memory_collectives(proc)


def test_srun_on_a_real_slurm_cluster(mini_data_dir, tmp_path, slurm_cluster):
    """`srun -n 2 python -m dsdet.train`: ranks, world size and master come from Slurm's variables."""
    out = tmp_path / "slurm"
    proc = run(
        [
            "srun",
            "-n",
            "2",
            "--kill-on-bad-exit=1",
            sys.executable,
            "-m",
            "dsdet.train",
            *small_run(mini_data_dir, out, "train.max_steps=2"),
        ],
        env={**slurm_cluster, "MASTER_PORT": str(free_port())},
    )
    check_trained(out)
    check_shared_memory_collectives(proc)
