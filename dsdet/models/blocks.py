"""The backbone blocks worth recomputing under activation checkpointing (tensor in, tensor out)."""

from __future__ import annotations

from torch import nn
from torchvision.models import mobilenetv2, mobilenetv3, resnet

from dsdet.models import mobilenet_v2, yolo_blocks

CHECKPOINTABLE_BLOCKS: tuple[type[nn.Module], ...] = (
    resnet.BasicBlock,
    resnet.Bottleneck,
    mobilenetv2.InvertedResidual,
    mobilenetv3.InvertedResidual,
    mobilenet_v2.InvertedResidual,
    yolo_blocks.CSPBlock,
)


def checkpointable_blocks(model: nn.Module) -> list[nn.Module]:
    """The outermost blocks of `model` whose activations can be recomputed in the backward pass."""
    found: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        for child in module.children():
            if isinstance(child, CHECKPOINTABLE_BLOCKS):
                found.append(child)
            else:
                visit(child)

    visit(model)
    return found
