"""The Checkpointer: how a run saves, verifies, finds and prunes its checkpoints, on every rank together.

Every rank takes part in a save. DeepSpeed writes the engine's files; then the ranks that share the checkpoint
directory (all of them, or one node's with DeepSpeed's `checkpoint.use_node_local_storage`) each hash an equal
share of the files, and the first of them writes the run info, the completion marker and `latest`, and prunes.
Hashing in parallel keeps a save of a large model within a preemption's grace period; verifying on resume is
split the same way.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dsdet.comm import all_gather_object, barrier, broadcast_object
from dsdet.engine.checkpoint.layout import (
    RUN_INFO,
    CheckpointRef,
    begin_save,
    candidates,
    checkpoint_files,
    checkpoints_dir,
    digests,
    first_usable,
    mark_complete,
    point_latest_at,
    problem,
    prune,
    tag_for_step,
)
from dsdet.engine.distributed import DistEnv, local_world_size
from dsdet.errors import DsdetError

log = logging.getLogger("dsdet.checkpoint")

# The client state dsdet adds to DeepSpeed's: the trainer's state and every rank's random generator states.
TRAINER_KEY, RNG_KEY = "trainer", "rng"


class EngineSaver(Protocol):
    """What the Checkpointer needs from the strategy."""

    global_step: int

    def save(self, ref: CheckpointRef, client_state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Storage:
    """The ranks that see the same checkpoint directory: every rank (a shared file system) or one node's ranks
    (DeepSpeed's `checkpoint.use_node_local_storage`)."""

    key: int  # equal for the ranks that share the directory
    index: int  # this rank among them
    size: int

    @property
    def is_writer(self) -> bool:
        """This rank writes the marker, run info and `latest`, and prunes, for its directory."""
        return self.index == 0

    @classmethod
    def of(cls, env: DistEnv, node_local: bool) -> Storage:
        if node_local:
            return cls(env.rank - env.local_rank, env.local_rank, local_world_size())
        return cls(0, env.rank, env.world_size)


class Checkpointer:
    """Saves, finds, verifies and prunes one run's checkpoints under `<output_dir>/checkpoints`."""

    def __init__(self, output_dir: str | Path, storage: Storage, *, keep_last: int, run_info: dict[str, Any]):
        self.root = checkpoints_dir(output_dir)
        self.storage = storage
        self.keep_last = keep_last
        self.run_info = run_info

    def save(
        self, strategy: EngineSaver, trainer_state: dict[str, Any], rng: dict[str, Any], protect: set[str]
    ) -> CheckpointRef:
        """Save the engine and the client state as the tag of the current step, mark it complete once every
        rank has written and hashed its share, point `latest` at it and prune all but the newest `keep_last`
        (and the `protect`ed tags). Call on every rank."""
        ref = CheckpointRef(self.root, tag_for_step(strategy.global_step))
        writer = self.storage.is_writer
        if writer:
            begin_save(ref)  # no stale marker or files from an earlier save of this tag
        barrier()
        client_state = {TRAINER_KEY: trainer_state, RNG_KEY: all_gather_object(rng)}
        strategy.save(ref, client_state)
        if writer:
            (ref.path / RUN_INFO).write_text(json.dumps(self.run_info, indent=1))
        barrier()
        share = checkpoint_files(ref)[self.storage.index :: self.storage.size]
        hashed = all_gather_object((self.storage.key, digests(ref, share)))
        if writer:
            mine = {name: d for key, part in hashed if key == self.storage.key for name, d in part.items()}
            mark_complete(ref, {"global_step": strategy.global_step, "epoch": trainer_state["epoch"]}, mine)
            point_latest_at(ref)
            removed = prune(self.root, self.keep_last, protect)
            if removed:
                log.debug("pruned checkpoints %s", removed)
        barrier()
        return ref

    def verify(self, ref: CheckpointRef) -> str | None:
        """Why `ref` cannot be used on some rank, or None: every rank checks the sizes and the digests of its
        share of the files. Call on every rank."""
        share = (self.storage.index, self.storage.size)
        reasons = all_gather_object(problem(ref, verify_contents=True, share=share))
        return next((reason for reason in reasons if reason is not None), None)

    def find(self, spec: str | None, output_dir: str | Path) -> CheckpointRef | None:
        """The checkpoint `train.resume` means (None: a fresh run), verified by every rank in parallel; an
        explicit checkpoint that is broken is an error, broken ones found by search are skipped with a warning.
        Call on every rank."""
        if not spec:
            return None
        found: tuple[list[CheckpointRef], bool, str | None] = ([], False, None)
        if self.storage.is_writer and self.storage.key == 0:
            try:
                found = (*candidates(spec, output_dir), None)
            except DsdetError as exc:
                found = ([], False, str(exc))
        refs, explicit, error = broadcast_object(found)
        if error is not None:
            raise DsdetError(error)
        ref = first_usable(refs, self.verify, explicit)
        if ref is None and str(spec) != "auto":
            raise DsdetError(f"no complete checkpoint found in {spec}")
        return ref


def client_parts(client_state: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(trainer state, every rank's random generator states) of a loaded client state."""
    return client_state[TRAINER_KEY], client_state.get(RNG_KEY, [])
