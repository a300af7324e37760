"""DeepSpeed's CPU all-reduce segments in /dev/shm that killed jobs left behind.

DeepSpeed's shared-memory all-reduce creates one segment per rank (about 64 MiB of RAM each) and never unlinks
it. dsdet unlinks its own as soon as every rank has mapped it (`distributed.release_shared_memory_name`), but a
job killed before that point leaves its segments in /dev/shm, holding RAM until the node reboots."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from dsdet.engine.deepspeed_internals import SHM_SEGMENT_PREFIX

SHM_DIR = Path("/dev/shm")
# A younger segment may belong to a job that is starting right now (created, not yet mapped): never touched.
MIN_AGE_S = 60.0


def segment_path(master_addr: str, master_port: int, rank: int) -> Path:
    """Where DeepSpeed's CPU all-reduce keeps this user's segment of `rank` in the job at master_addr:master_port."""
    return SHM_DIR / f"{SHM_SEGMENT_PREFIX}{os.getuid()}_{master_addr}_{master_port}_{rank}"


@dataclass(frozen=True)
class Orphans:
    """Segments no process maps, and their total size."""

    paths: list[Path]
    total_bytes: int


def mapped_segment_paths() -> set[str]:
    """Paths of DeepSpeed segments that some process this user may inspect has mapped (/proc/PID/maps)."""
    mapped = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            text = maps.read_text()
        except OSError:  # the process ended, or belongs to another user
            continue
        for line in text.splitlines():
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and SHM_SEGMENT_PREFIX in fields[5]:
                mapped.add(fields[5])
    return mapped


def find_orphaned_segments(shm_dir: Path = SHM_DIR, min_age_s: float = MIN_AGE_S) -> Orphans:
    """This user's DeepSpeed all-reduce segments in `shm_dir` that are older than `min_age_s` and mapped by no
    process: what killed jobs left behind."""
    now, candidates = time.time(), []
    for path in sorted(shm_dir.glob(f"{SHM_SEGMENT_PREFIX}{os.getuid()}_*")):
        try:
            stat = path.stat()
        except FileNotFoundError:  # its job unlinked it meanwhile
            continue
        if now - stat.st_mtime >= min_age_s:
            candidates.append((path, stat.st_size))
    mapped = mapped_segment_paths() if candidates else set()
    orphans = [(path, size) for path, size in candidates if str(path) not in mapped]
    return Orphans([path for path, _ in orphans], sum(size for _, size in orphans))


def remove_orphaned_segments(shm_dir: Path = SHM_DIR, min_age_s: float = MIN_AGE_S) -> Orphans:
    """Unlink `find_orphaned_segments`; returns what was removed."""
    orphans = find_orphaned_segments(shm_dir, min_age_s)
    for path in orphans.paths:
        path.unlink(missing_ok=True)
    return orphans
