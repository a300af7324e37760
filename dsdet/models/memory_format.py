"""Channels-last (NHWC) convolutions for any detector, by making every Conv2d's input channels-last."""

from __future__ import annotations

import torch
from torch import nn


def _channels_last_input(module: nn.Module, args: tuple) -> tuple | None:
    image = args[0]
    if image.dim() != 4 or image.is_contiguous(memory_format=torch.channels_last):
        return None
    return (image.contiguous(memory_format=torch.channels_last), *args[1:])


def use_channels_last(model: nn.Module) -> nn.Module:
    """Make every convolution of `model` run on channels-last inputs; returns `model`.

    Converting the inputs rather than the weights survives DeepSpeed's ZeRO, which re-lays parameters out as
    views of flat buffers. Convolution kernels (oneDNN on CPU, cuDNN with tensor cores) are faster on NHWC:
    1.05-1.3x per training step for the registered models on CPU (benchmarks/FINDINGS.md). The hooks hold no
    state, so weights, state dicts and exports are unchanged."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_pre_hook(_channels_last_input)
    return model
