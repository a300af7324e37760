"""Checkpoint directory bookkeeping: tags, completeness markers, resume lookup and pruning.

DeepSpeed writes each checkpoint into `<output_dir>/checkpoints/<tag>/`. A checkpoint counts only once rank 0
has written `dsdet_complete.json` into it after every rank finished saving; the marker lists each file's size
and SHA-256, so a checkpoint that was cut short, truncated or corrupted later is detected and auto-resume falls
back to the newest good one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from dsdet.errors import DsdetError

MARKER = "dsdet_complete.json"
_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
log = logging.getLogger("dsdet.checkpoint")


@dataclass(frozen=True)
class CheckpointRef:
    """One complete checkpoint: the directory DeepSpeed saved into and the tag inside it."""

    root: Path
    tag: str

    @property
    def path(self) -> Path:
        return self.root / self.tag

    def info(self) -> dict:
        """The marker's contents (global step, epoch, config hash, file sizes)."""
        return json.loads((self.path / MARKER).read_text())


def checkpoints_dir(output_dir: str | Path) -> Path:
    """Where a run's checkpoints live."""
    return Path(output_dir) / "checkpoints"


def tag_for_step(global_step: int) -> str:
    """The tag of the checkpoint taken after `global_step` optimizer steps."""
    return f"step{global_step:08d}"


def check_tag(tag: str) -> str:
    """Refuse tags that could escape the checkpoint directory."""
    if not _TAG_RE.match(tag) or ".." in tag:
        raise DsdetError(f"checkpoint tag {tag!r} is not a plain name (letters, digits, '_', '.', '-')")
    return tag


def begin_save(ref: CheckpointRef) -> None:
    """Rank 0, before every rank saves into `ref`: drop what an earlier or interrupted save left there, so the
    tag reads as incomplete until this save is marked complete."""
    shutil.rmtree(ref.path, ignore_errors=True)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, in hex."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def mark_complete(ref: CheckpointRef, info: dict) -> None:
    """Write the completeness marker atomically (rank 0, after every rank has saved)."""
    paths = {
        str(p.relative_to(ref.path)): p
        for p in sorted(ref.path.rglob("*"))
        if p.is_file() and p.name != MARKER
    }
    files = {name: p.stat().st_size for name, p in paths.items()}
    digests = {name: file_digest(p) for name, p in paths.items()}
    tmp = ref.path / (MARKER + ".tmp")
    tmp.write_text(json.dumps({**info, "tag": ref.tag, "files": files, "sha256": digests}, indent=1))
    os.replace(tmp, ref.path / MARKER)


def problem(ref: CheckpointRef, verify_contents: bool = True) -> str | None:
    """Why this checkpoint cannot be used, or None when it is complete and intact.

    Sizes are always checked; `verify_contents` also compares each file's SHA-256 with the one recorded."""
    if not (ref.path / MARKER).is_file():
        return "incomplete (no completion marker: the save was interrupted)"
    try:
        marker = ref.info()
        files, digests = marker["files"], marker.get("sha256", {})
    except (ValueError, KeyError, TypeError):
        return f"its {MARKER} is unreadable"
    for name, size in files.items():
        file = ref.path / name
        if not file.is_file():
            return f"file {name} is missing"
        if file.stat().st_size != size:
            return f"file {name} is truncated or changed ({file.stat().st_size} bytes, expected {size})"
    if verify_contents:
        for name, digest in digests.items():
            if file_digest(ref.path / name) != digest:
                return f"file {name} is corrupted (its SHA-256 differs from the one recorded at save time)"
    return None


def list_tags(root: Path) -> list[str]:
    """Tag directories under `root`, oldest first (by the step recorded in the tag name)."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _TAG_RE.match(p.name))


def latest_good(root: Path) -> CheckpointRef | None:
    """The newest complete, intact checkpoint under `root`, warning about each broken one passed over."""
    for tag in reversed(list_tags(root)):
        ref = CheckpointRef(root, tag)
        reason = problem(ref)
        if reason is None:
            return ref
        log.warning("skipping checkpoint %s: %s", ref.path, reason)
    return None


def find_checkpoint(spec: str | Path, output_dir: str | Path | None = None) -> CheckpointRef | None:
    """Resolve `train.resume`-style specs: 'auto', a run or checkpoints directory, or one tag directory."""
    if str(spec) == "auto":
        return latest_good(checkpoints_dir(output_dir)) if output_dir is not None else None
    path = Path(spec)
    if not path.exists():
        raise DsdetError(f"checkpoint {path} does not exist")
    if (path / MARKER).is_file() or any(path.glob("*model_states.pt")):
        ref = CheckpointRef(path.parent, check_tag(path.name))
    else:
        root = checkpoints_dir(path) if checkpoints_dir(path).is_dir() else path
        found = latest_good(root)
        if found is None:
            raise DsdetError(f"no complete checkpoint found in {path}")
        return found
    reason = problem(ref)
    if reason is not None:
        raise DsdetError(f"checkpoint {ref.path} cannot be used: {reason}")
    return ref


def prune(root: Path, keep_last: int, protect: set[str]) -> list[str]:
    """Delete all but the newest `keep_last` complete checkpoints (never a protected tag); return removed tags."""
    complete = [t for t in list_tags(root) if problem(CheckpointRef(root, t), verify_contents=False) is None]
    doomed = [t for t in complete[: max(0, len(complete) - keep_last)] if t not in protect]
    for tag in doomed:
        shutil.rmtree(root / tag, ignore_errors=True)
    return doomed
