"""Real two-host DeepSpeed jobs over ssh (pdsh and OpenMPI) on 127.0.0.2 and 127.0.0.3 through our own sshd."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.multihost import BIN, HOSTS, free_port, printed_command

pytest_plugins = ["tests.conftest_multihost"]
pytestmark = pytest.mark.distributed

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "scripts" / "allreduce_ds.py"
TRICKY_NOTES = ["x={a:1,b:2}", "two words {c,d}", "semi;colon|pipe&", "'single' \"double\"", "*"]


def reports(out: Path) -> list[dict]:
    """The per-rank reports of allreduce_ds.py, by rank."""
    return [json.loads(path.read_text()) for path in sorted(out.glob("rank*.json"))]


def check_two_ranks(out: Path, job) -> list[dict]:
    """Both ranks ran, one on each host, agreed on the all_reduce and ended with the same weights."""
    found = reports(out)
    assert job.returncode == 0, job.tail()
    assert [r["rank"] for r in found] == [0, 1], job.tail()
    assert [r["reached_at"] for r in found] == list(HOSTS)  # each rank was started through ssh to its host
    assert all(r["world_size"] == 2 and r["all_reduce"] == 3.0 and len(r["losses"]) == 2 for r in found)
    assert found[0]["weight_sum"] == pytest.approx(found[1]["weight_sum"])
    return found


def steps_done(out: Path) -> int:
    """Training steps finished by the slowest of the two ranks so far."""
    done = [int(path.read_text() or 0) for path in out.glob("rank*.step")]
    return min(done) if len(done) == 2 else 0


def write_rank_env(directory: Path, *extra: str) -> None:
    """The `.deepspeed_env` a user writes by hand: this shell's PATH plus the venv, one thread per rank."""
    path = f"{os.environ['PATH']}:{BIN}"
    (directory / ".deepspeed_env").write_text(f"PATH={path}\nOMP_NUM_THREADS=1\n" + "".join(extra))


def as_script_job(argv: list[str]) -> list[str]:
    """Turn `dsdet launch`'s `--module dsdet.train ARGS` into `--module tests.scripts.allreduce_ds ARGS`."""
    at = argv.index("--module")
    assert argv[at + 1] == "dsdet.train"
    return [*argv[: at + 1], "tests.scripts.allreduce_ds", *argv[at + 2 :]]


def launch_printed(ssh_cluster, tmp_path: Path, launcher: str, script_args: list[str]):
    """`dsdet launch --dry-run` with SCRIPT_ARGS, then run the printed command with the test script as module."""
    dry = ssh_cluster.run(
        ssh_cluster.dsdet_launch_argv(
            ["train", *script_args],
            hostfile=ssh_cluster.hostfile(tmp_path),
            launcher=launcher,
            extra=["--dry-run", "--env", "LAUNCH_MARK"],
        ),
        cwd=tmp_path,
        env={"LAUNCH_MARK": "marked", "PYTHONPATH": str(REPO)},
    )
    assert dry.returncode == 0, dry.tail()
    argv, env = printed_command(dry.output)
    return ssh_cluster.run(as_script_job(argv), cwd=tmp_path, env=env, timeout=90)


def test_deepspeed_pdsh_runs_one_rank_per_host(ssh_cluster, tmp_path):
    write_rank_env(tmp_path)
    argv = ssh_cluster.deepspeed_argv(
        ssh_cluster.hostfile(tmp_path), [str(SCRIPT), "--out", str(tmp_path / "out")]
    )
    job = ssh_cluster.run(argv, cwd=tmp_path, env=ssh_cluster.launcher_env("pdsh"), timeout=90)
    check_two_ranks(tmp_path / "out", job)
    assert f"{HOSTS[1]}: " in job.output  # pdsh prefixes each host's lines


def test_dsdet_launch_pdsh_command_runs_with_its_env_and_exact_arguments(ssh_cluster, tmp_path):
    notes = [word for note in TRICKY_NOTES for word in ("--note", note)]
    job = launch_printed(
        ssh_cluster, tmp_path, "pdsh", ["--out", str(tmp_path / "out"), *notes, "--report-env", "LAUNCH_MARK"]
    )
    for report in check_two_ranks(tmp_path / "out", job):
        assert (
            report["notes"] == TRICKY_NOTES
        )  # every argument reached each rank unchanged through the remote shell
        assert report["env"] == {"LAUNCH_MARK": "marked"}  # --env went through .deepspeed_env


def test_dsdet_launch_execs_deepspeed_on_every_host(ssh_cluster, tmp_path):
    job = ssh_cluster.dsdet_launch(["train", "--help"], cwd=tmp_path, timeout=90)
    assert job.returncode == 0, job.tail()
    argv, _ = printed_command(job.output)  # printed before the exec
    assert argv[-3:] == ["--module", "dsdet.train", "--help"]
    for host in HOSTS:
        assert f"{host}: usage: " in job.output, job.tail()


def test_deepspeed_openmpi_runs_one_rank_per_host(ssh_cluster, tmp_path):
    port = free_port()  # DeepSpeed's OpenMPI runner does not pass --master_addr/port: .deepspeed_env does
    write_rank_env(tmp_path, f"MASTER_ADDR={HOSTS[0]}\n", f"MASTER_PORT={port}\n")
    target = [str(SCRIPT), "--out", str(tmp_path / "out")]
    argv = ssh_cluster.deepspeed_argv(
        ssh_cluster.hostfile(tmp_path), target, launcher="openmpi", master_port=port
    )
    job = ssh_cluster.run(argv, cwd=tmp_path, env=ssh_cluster.launcher_env("openmpi"), timeout=90)
    check_two_ranks(tmp_path / "out", job)


def test_dsdet_launch_openmpi_command_runs(ssh_cluster, tmp_path):
    job = launch_printed(
        ssh_cluster, tmp_path, "openmpi", ["--out", str(tmp_path / "out"), "--report-env", "LAUNCH_MARK"]
    )
    for report in check_two_ranks(tmp_path / "out", job):
        assert report["env"] == {"LAUNCH_MARK": "marked"}


def test_a_rank_dying_ends_the_whole_job_and_names_its_host(ssh_cluster, tmp_path):
    write_rank_env(tmp_path)
    out = tmp_path / "out"
    target = [str(SCRIPT), "--out", str(out), "--steps", "100000", "--step-seconds", "0.2"]
    started = time.monotonic()
    proc = ssh_cluster.start(
        ssh_cluster.deepspeed_argv(ssh_cluster.hostfile(tmp_path), target),
        cwd=tmp_path,
        env=ssh_cluster.launcher_env("pdsh"),
    )
    while steps_done(out) < 2 and proc.poll() is None and time.monotonic() - started < 60:
        time.sleep(0.2)  # until both ranks are in the training loop
    assert steps_done(out) >= 2, (tmp_path / "job.log").read_text()[-4000:]
    killed_at = time.monotonic()
    os.kill(
        int((out / "rank1.pid").read_text()), signal.SIGKILL
    )  # rank 1, started on 127.0.0.3 through our sshd
    job = ssh_cluster.finish(proc, cwd=tmp_path, timeout=90, started=killed_at)
    assert job.returncode not in (0, -9), job.tail()  # failed by itself, not killed by the timeout
    assert job.seconds < 90
    assert f"{HOSTS[1]}: ssh exited with exit code" in job.output, job.tail()
    assert not (out / "rank0.json").exists()
