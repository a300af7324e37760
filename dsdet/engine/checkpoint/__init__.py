"""The one owner of dsdet's checkpoint format: the layout on disk (`layout`), saving and finding on every rank
(`Checkpointer`), resuming elsewhere (`universal`) and exporting plain weights (`export`)."""

from dsdet.engine.checkpoint.checkpointer import Checkpointer, Storage, client_parts
from dsdet.engine.checkpoint.export import consolidated_state_dict, export_checkpoint
from dsdet.engine.checkpoint.layout import (
    MARKER,
    RUN_INFO,
    CheckpointRef,
    begin_save,
    check_tag,
    checkpoints_dir,
    file_digest,
    find_checkpoint,
    latest_good,
    list_tags,
    mark_complete,
    problem,
    prune,
    run_info,
    tag_for_step,
)

__all__ = [
    "MARKER",
    "RUN_INFO",
    "CheckpointRef",
    "Checkpointer",
    "Storage",
    "begin_save",
    "check_tag",
    "checkpoints_dir",
    "client_parts",
    "consolidated_state_dict",
    "export_checkpoint",
    "file_digest",
    "find_checkpoint",
    "latest_good",
    "list_tags",
    "mark_complete",
    "problem",
    "prune",
    "run_info",
    "tag_for_step",
]
