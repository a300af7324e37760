"""The launch/ scripts, run for real: pdsh and mpirun over our sshd, torchrun's c10d rendezvous between two nodes."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.multihost import BIN, HOSTS, free_port

pytest_plugins = ["tests.conftest_multihost"]
pytestmark = pytest.mark.distributed

LAUNCH = Path(__file__).resolve().parents[1] / "launch"
# `deepspeed`, `torchrun` and `python` found as `source .venv/bin/activate` finds them (only --help runs: no JIT build)
WITH_VENV = {"PATH": f"{BIN}:{os.environ['PATH']}"}


@pytest.mark.parametrize("script", sorted(p.name for p in LAUNCH.iterdir()))
def test_scripts_parse(script):
    assert subprocess.run(["bash", "-n", LAUNCH / script], capture_output=True).returncode == 0


def test_setup_env_activates_the_venv_and_runs_the_export_it_was_handed():
    line = f'source {LAUNCH}/setup_env.sh export FIRST="a b"; echo "$FIRST|$(command -v python)|$OMP_NUM_THREADS"'
    done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert done.stdout.strip() == f"a b|{BIN / 'python'}|1", done.stderr


def test_pdsh_script_starts_the_ranks_on_every_host(ssh_cluster, tmp_path):
    env = {
        **WITH_VENV,
        "HOSTFILE": str(ssh_cluster.hostfile(tmp_path)),
        "MASTER_ADDR": HOSTS[0],
        "MASTER_PORT": str(free_port()),
        "SSH_PORT": str(ssh_cluster.port),
        "DS_LAUNCH_ARGS": "--no_ssh_check",
        **ssh_cluster.launcher_env("pdsh"),
    }
    job = ssh_cluster.run([str(LAUNCH / "pdsh.sh"), "--help"], cwd=tmp_path, env=env, timeout=90)
    assert job.returncode == 0, job.tail()
    for host in HOSTS:
        assert f"{host}: usage: " in job.output, job.tail()


def test_openmpi_script_starts_the_ranks_on_every_host(ssh_cluster, tmp_path):
    env = {
        **WITH_VENV,
        "HOSTFILE": str(ssh_cluster.hostfile(tmp_path)),
        **ssh_cluster.launcher_env("openmpi"),
    }
    job = ssh_cluster.run([str(LAUNCH / "openmpi.sh"), "--help"], cwd=tmp_path, env=env, timeout=90)
    assert job.returncode == 0, job.tail()
    assert job.output.count("usage: ") == 2, job.tail()


def test_torchrun_script_meets_at_the_rendezvous(ssh_cluster, tmp_path):
    env = {**WITH_VENV, "NNODES": "2", "RDZV_ENDPOINT": f"127.0.0.1:{free_port('127.0.0.1')}"}
    nodes = [tmp_path / "node0", tmp_path / "node1"]
    procs, started = [], time.monotonic()
    for node in nodes:
        node.mkdir()
        procs.append(ssh_cluster.start([str(LAUNCH / "torchrun.sh"), "--help"], cwd=node, env=env))
    jobs = [
        ssh_cluster.finish(proc, cwd=node, timeout=90, started=started)
        for proc, node in zip(procs, nodes, strict=True)
    ]
    for job in jobs:
        assert job.returncode == 0 and "usage: " in job.output, job.tail()
