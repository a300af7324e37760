"""Checkpoints are atomic: a save cut short, a truncated file or flipped bytes are detected with a clear message,
the `latest` pointer stays on a complete checkpoint, and auto-resume falls back to the newest good one."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from dsdet.engine import checkpoint as ckpt
from tests.runners import deepspeed_train, dsdet
from tests.scripts.jobs import Job, logged_steps
from tests.test_engine_train import small_run

pytestmark = pytest.mark.distributed


def kill_during_a_save(job: Job, root: Path, from_step: int) -> ckpt.CheckpointRef:
    """Freeze the job (SIGSTOP) while a checkpoint of step >= `from_step` has no marker yet, then SIGKILL it."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and job.proc.poll() is None:
        saving = [
            t
            for t in ckpt.list_tags(root)
            if int(t[4:]) >= from_step and not (root / t / ckpt.MARKER).exists()
        ]
        if saving:
            os.killpg(job.proc.pid, signal.SIGSTOP)
            if not (root / saving[-1] / ckpt.MARKER).exists():
                job.kill()
                return ckpt.CheckpointRef(root, saving[-1])
            os.killpg(job.proc.pid, signal.SIGCONT)  # it finished in between: wait for the next save
        time.sleep(0.005)
    raise AssertionError(f"never caught a save in progress\n{job.output()[-3000:]}")


def flip_bytes(path: Path) -> None:
    """Corrupt a file in place without changing its size."""
    with path.open("r+b") as f:
        f.seek(path.stat().st_size // 2)
        chunk = f.read(64)
        f.seek(path.stat().st_size // 2)
        f.write(bytes(b ^ 0xFF for b in chunk))


def biggest_file(ref: ckpt.CheckpointRef) -> Path:
    return max((p for p in ref.path.iterdir() if p.name != ckpt.MARKER), key=lambda p: p.stat().st_size)


def one_line_error(proc) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("dsdet: error")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_killed_save_truncation_and_corruption_never_lose_the_good_checkpoint(mini_data_dir, tmp_path):
    out = tmp_path / "run"
    root = ckpt.checkpoints_dir(out)
    args = small_run(
        mini_data_dir, out, "train.checkpoint_every_steps=1", "train.keep_last=4", "train.max_steps=40"
    )
    with Job(args, tmp_path / "killed.log") as job:
        killed = kill_during_a_save(job, root, from_step=5)
    step = int(killed.tag[4:])
    assert "incomplete" in ckpt.problem(killed)
    pointed = ckpt.CheckpointRef(root, (root / "latest").read_text().strip())
    assert ckpt.problem(pointed) is None and pointed.tag == ckpt.tag_for_step(step - 1)

    corrupted = ckpt.CheckpointRef(root, ckpt.tag_for_step(step - 1))
    truncated = ckpt.CheckpointRef(root, ckpt.tag_for_step(step - 2))
    flip_bytes(biggest_file(corrupted))
    with biggest_file(truncated).open("r+b") as f:
        f.truncate(1000)
    message = one_line_error(dsdet("export", str(corrupted.path), "-o", str(tmp_path / "m.pt"), check=False))
    assert str(corrupted.path) in message and "is corrupted" in message
    message = one_line_error(dsdet("export", str(truncated.path), "-o", str(tmp_path / "m.pt"), check=False))
    assert str(truncated.path) in message and "is truncated" in message
    assert ckpt.latest_good(root).tag == ckpt.tag_for_step(step - 3)

    resumed = deepspeed_train(args[:-1] + [f"train.max_steps={step + 1}"])
    for broken, reason in ((killed, "incomplete"), (corrupted, "is corrupted"), (truncated, "is truncated")):
        assert f"skipping checkpoint {broken.path}: " in resumed.stderr and reason in resumed.stderr
    assert f"resumed from {root / ckpt.tag_for_step(step - 3)} " in resumed.stderr
    replayed = logged_steps(out)
    assert replayed[-4:] == [step - 2, step - 1, step, step + 1]
    kept = ckpt.list_tags(root)
    assert kept[-1] == ckpt.tag_for_step(step + 1)
    assert all(ckpt.problem(ckpt.CheckpointRef(root, tag)) is None for tag in kept)  # re-saved from scratch
