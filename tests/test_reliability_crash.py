"""A rank that dies mid-step (SIGKILL) or raises stops the whole job quickly, and the output names the rank."""

from __future__ import annotations

import signal
import time

import pytest

from tests.scripts.jobs import Job, alive, logged_steps
from tests.test_engine_train import small_run

pytestmark = pytest.mark.distributed

STOP_WITHIN_S = 60


def two_steps_in(mini_data_dir, tmp_path, *extra: str) -> Job:
    """A long 2-rank run, started; the caller enters it (`with`) and waits for its first steps."""
    return Job(
        small_run(mini_data_dir, tmp_path / "run", "train.max_steps=1000", *extra), tmp_path / "job.log"
    )


def wait_for_two_steps(job: Job, tmp_path) -> None:
    job.wait_until(lambda: len(logged_steps(tmp_path / "run")) >= 2, "two optimizer steps")


def stop_time(job: Job, everything: list) -> float:
    """Seconds until the launcher exits; afterwards no process of the job may be left."""
    start = time.monotonic()
    rc = job.wait(timeout=STOP_WITHIN_S + 30)
    elapsed = time.monotonic() - start
    assert rc != 0, job.output()
    assert not alive(everything), [p.cmdline() for p in alive(everything)]
    return elapsed


def test_sigkilled_rank_stops_every_rank_and_is_named(mini_data_dir, tmp_path):
    with two_steps_in(mini_data_dir, tmp_path) as job:
        wait_for_two_steps(job, tmp_path)
        everything = job.processes()
        victim = job.ranks()[1]
        victim.send_signal(signal.SIGKILL)
        assert stop_time(job, everything) < STOP_WITHIN_S
    output = job.output()
    # The survivor names the dead rank on one line instead of printing gloo's traceback.
    assert f"dsdet: error (rank 0): rank 1 (pid {victim.pid} on " in output, output[-3000:]
    assert "died during training" in output
    assert "[rank0]: Traceback" not in output


def test_rank_that_raises_stops_every_rank_and_is_named(mini_data_dir, tmp_path):
    # Killing rank 1's data-loader worker makes rank 1 itself raise (a real RuntimeError, not a test hook).
    with two_steps_in(mini_data_dir, tmp_path, "data.num_workers=1") as job:
        wait_for_two_steps(job, tmp_path)
        rank1 = job.ranks()[1]
        workers = [p for p in rank1.children() if p.cmdline() == rank1.cmdline()]
        assert workers, "rank 1 has no data-loader worker"
        everything = job.processes()
        workers[0].send_signal(signal.SIGKILL)
        assert stop_time(job, everything) < STOP_WITHIN_S
    output = job.output()
    assert f"[rank1]: RuntimeError: DataLoader worker (pid {workers[0].pid}) is killed" in output, output[
        -3000:
    ]
    assert f"dsdet: error (rank 0): rank 1 (pid {rank1.pid} on " in output
