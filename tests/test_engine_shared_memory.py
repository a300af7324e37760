"""DeepSpeed all-reduce segments that killed jobs left in /dev/shm are found and removed; segments that a
process maps, young ones and other users' are left alone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from dsdet.doctor.system import shm_check
from dsdet.engine.cpu.shared_memory import (
    find_orphaned_segments,
    remove_orphaned_segments,
    segment_path,
)
from dsdet.engine.deepspeed_internals import SHM_SEGMENT_PREFIX

# Maps the file named by argv[1] the way a DeepSpeed rank maps its segment, says so, and waits to be killed.
MAP_AND_WAIT = (
    "import mmap, sys, time\n"
    "f = open(sys.argv[1], 'r+b')\n"
    "m = mmap.mmap(f.fileno(), 0)\n"
    "print('mapped', flush=True)\n"
    "time.sleep(600)\n"
)


def make_segment(directory: Path, name: str, age_s: float, size: int = 4096) -> Path:
    path = directory / name
    path.write_bytes(b"\0" * size)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_only_old_unmapped_segments_of_this_user_are_removed(tmp_path):
    uid = os.getuid()
    orphan = make_segment(tmp_path, f"{SHM_SEGMENT_PREFIX}{uid}_127.0.0.1_29500_0", age_s=3600, size=8192)
    live = make_segment(tmp_path, f"{SHM_SEGMENT_PREFIX}{uid}_127.0.0.1_29501_0", age_s=3600)
    young = make_segment(tmp_path, f"{SHM_SEGMENT_PREFIX}{uid}_127.0.0.1_29502_0", age_s=0)
    other_user = make_segment(tmp_path, f"{SHM_SEGMENT_PREFIX}{uid + 1}_127.0.0.1_29503_0", age_s=3600)
    unrelated = make_segment(tmp_path, "torch_shm_segment", age_s=3600)
    holder = subprocess.Popen([sys.executable, "-c", MAP_AND_WAIT, str(live)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "mapped"
        found = find_orphaned_segments(tmp_path)
        assert found.paths == [orphan] and found.total_bytes == 8192
        assert remove_orphaned_segments(tmp_path).paths == [orphan]
        assert not orphan.exists()
        assert all(path.exists() for path in (live, young, other_user, unrelated))
    finally:
        holder.kill()
        holder.wait()
    assert find_orphaned_segments(tmp_path).paths == [live]  # nobody maps it any more


def test_doctor_warns_about_orphaned_segments():
    path = segment_path("dsdet-doctor-test", 1, 0)
    orphan = make_segment(path.parent, path.name, age_s=3600)
    try:
        check = shm_check()
        assert check.status == "warn" and "left by killed jobs" in check.detail, check
        assert "next dsdet training run" in check.advice, check
    finally:
        orphan.unlink(missing_ok=True)
