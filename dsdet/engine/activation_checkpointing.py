"""Activation checkpointing of backbone blocks through DeepSpeed's checkpointing library."""

from __future__ import annotations

import functools

from deepspeed import checkpointing
from torch import nn

from dsdet.errors import DsdetError
from dsdet.models.blocks import checkpointable_blocks


def configure_checkpointing(section: dict) -> None:
    """`deepspeed.checkpointing.configure` from the DeepSpeed config's activation_checkpointing section."""
    checkpointing.configure(
        None,
        partition_activations=section.get("partition_activations", False),
        contiguous_checkpointing=section.get("contiguous_memory_optimization", False),
        num_checkpoints=section.get("number_checkpoints"),
        checkpoint_in_cpu=section.get("cpu_checkpointing", False),
        synchronize=section.get("synchronize_checkpoint_boundary", False),
        profile=section.get("profile", False),
    )


def checkpoint_backbone_blocks(model: nn.Module, section: dict) -> int:
    """Recompute each backbone block's activations in the backward pass; returns how many blocks.

    Blocks keep their names (only `forward` is wrapped), so state dicts and exports are unchanged. The
    non-reentrant form also gives gradients to blocks whose inputs do not require grad (the first block)."""
    blocks = checkpointable_blocks(model)
    if not blocks:
        raise DsdetError(
            f"train.activation_checkpointing: {type(model).__name__} has no checkpointable backbone blocks "
            "(ResNet, MobileNet or CSP blocks); set train.activation_checkpointing=false"
        )
    configure_checkpointing(section)
    for block in blocks:
        block.forward = functools.partial(checkpointing.non_reentrant_checkpoint, block.forward)
    return len(blocks)
