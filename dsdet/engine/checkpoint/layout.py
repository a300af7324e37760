"""The checkpoint layout on disk: tags, the completeness marker, run info, `latest`, lookup and pruning.

DeepSpeed writes each checkpoint into `<output_dir>/checkpoints/<tag>/`. A checkpoint counts only once the
Checkpointer has written `dsdet_complete.json` into it after every rank finished saving; the marker lists each
file's size and SHA-256, so a checkpoint that was cut short, truncated or corrupted later is detected and
auto-resume falls back to the newest good one. `run_info.json` records what was trained (experiment, classes,
DeepSpeed config, world size); `latest` names the newest tag.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dsdet.errors import DsdetError

MARKER = "dsdet_complete.json"
RUN_INFO = "run_info.json"
LATEST = "latest"
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


def run_info(ref: CheckpointRef) -> dict:
    """What the checkpoint was trained with: experiment, class names, label → category id map."""
    path = ref.path / RUN_INFO
    if not path.is_file():
        raise DsdetError(f"checkpoint {ref.path} has no {RUN_INFO}: it was not written by dsdet")
    return json.loads(path.read_text())


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


def checkpoint_files(ref: CheckpointRef) -> list[str]:
    """The files of a checkpoint (paths relative to its directory), the marker excepted, sorted."""
    return sorted(
        str(p.relative_to(ref.path)) for p in ref.path.rglob("*") if p.is_file() and p.name != MARKER
    )


def digests(ref: CheckpointRef, names: list[str]) -> dict[str, str]:
    """SHA-256 of each named file of the checkpoint."""
    return {name: file_digest(ref.path / name) for name in names}


def mark_complete(ref: CheckpointRef, info: dict, sha256: dict[str, str] | None = None) -> None:
    """Write the completeness marker atomically, after every rank has saved; `sha256` holds the digests the
    ranks computed in parallel, and any file it lacks is hashed here."""
    names = checkpoint_files(ref)
    files = {name: (ref.path / name).stat().st_size for name in names}
    given = sha256 or {}
    sha256 = {**digests(ref, [name for name in names if name not in given])}
    sha256 |= {name: given[name] for name in names if name in given}
    tmp = ref.path / (MARKER + ".tmp")
    tmp.write_text(json.dumps({**info, "tag": ref.tag, "files": files, "sha256": sha256}, indent=1))
    os.replace(tmp, ref.path / MARKER)


def point_latest_at(ref: CheckpointRef) -> None:
    """Make `<root>/latest` name `ref`'s tag, atomically."""
    tmp = ref.root / (LATEST + ".tmp")
    tmp.write_text(ref.tag)
    tmp.replace(ref.root / LATEST)


def problem(ref: CheckpointRef, verify_contents: bool = True, share: tuple[int, int] = (0, 1)) -> str | None:
    """Why this checkpoint cannot be used, or None when it is complete and intact.

    Sizes are always checked; `verify_contents` also compares SHA-256 digests with the recorded ones, of the
    files in this `share` (index, count) of the sorted names, so that ranks can verify a checkpoint in parallel."""
    if not (ref.path / MARKER).is_file():
        return "incomplete (no completion marker: the save was interrupted)"
    try:
        marker = ref.info()
        files, recorded = marker["files"], marker.get("sha256", {})
    except (ValueError, KeyError, TypeError):
        return f"its {MARKER} is unreadable"
    for name, size in files.items():
        file = ref.path / name
        if not file.is_file():
            return f"file {name} is missing"
        if file.stat().st_size != size:
            return f"file {name} is truncated or changed ({file.stat().st_size} bytes, expected {size})"
    if verify_contents:
        index, count = share
        for name in sorted(recorded)[index::count]:
            if file_digest(ref.path / name) != recorded[name]:
                return f"file {name} is corrupted (its SHA-256 differs from the one recorded at save time)"
    return None


def list_tags(root: Path) -> list[str]:
    """Tag directories under `root`, oldest first (by the step recorded in the tag name)."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _TAG_RE.match(p.name))


def latest_good(root: Path, verify_contents: bool = True) -> CheckpointRef | None:
    """The newest complete, intact checkpoint under `root`, warning about each broken one passed over."""
    refs = [CheckpointRef(root, tag) for tag in reversed(list_tags(root))]
    return first_usable(refs, lambda ref: problem(ref, verify_contents))


def first_usable(
    refs: list[CheckpointRef], reason: Callable[[CheckpointRef], str | None], explicit: bool = False
) -> CheckpointRef | None:
    """The first of `refs` for which `reason` gives None, warning about each one passed over; when `explicit`
    (the user named that one checkpoint) a broken one is an error instead."""
    for ref in refs:
        why = reason(ref)
        if why is None:
            return ref
        if explicit:
            raise DsdetError(f"checkpoint {ref.path} cannot be used: {why}")
        log.warning("skipping checkpoint %s: %s", ref.path, why)
    return None


def candidates(spec: str | Path, output_dir: str | Path | None = None) -> tuple[list[CheckpointRef], bool]:
    """The checkpoints a `train.resume`-style spec may mean, newest first, and whether it named one tag
    directory: 'auto' (the run's checkpoints), a run or checkpoints directory, or one tag directory."""
    if str(spec) == "auto":
        if output_dir is None:
            return [], False
        root = checkpoints_dir(output_dir)
        return [CheckpointRef(root, tag) for tag in reversed(list_tags(root))], False
    path = Path(spec)
    if not path.exists():
        raise DsdetError(f"checkpoint {path} does not exist")
    if (path / MARKER).is_file() or any(path.glob("*model_states.pt")):
        return [CheckpointRef(path.parent, check_tag(path.name))], True
    root = checkpoints_dir(path) if checkpoints_dir(path).is_dir() else path
    return [CheckpointRef(root, tag) for tag in reversed(list_tags(root))], False


def find_checkpoint(
    spec: str | Path, output_dir: str | Path | None = None, verify_contents: bool = True
) -> CheckpointRef | None:
    """Resolve `train.resume`-style specs (see `candidates`) to the newest good checkpoint, in this process."""
    found, explicit = candidates(spec, output_dir)
    ref = first_usable(found, lambda ref: problem(ref, verify_contents), explicit)
    if ref is None and str(spec) != "auto":
        raise DsdetError(f"no complete checkpoint found in {spec}")
    return ref


def prune(root: Path, keep_last: int, protect: set[str]) -> list[str]:
    """Delete all but the newest `keep_last` complete checkpoints (never a protected tag); return removed tags."""
    complete = [t for t in list_tags(root) if problem(CheckpointRef(root, t), verify_contents=False) is None]
    doomed = [t for t in complete[: max(0, len(complete) - keep_last)] if t not in protect]
    for tag in doomed:
        shutil.rmtree(root / tag, ignore_errors=True)
    return doomed
