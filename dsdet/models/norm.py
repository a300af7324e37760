"""Swap a built model's BatchNorm layers for frozen or synchronised ones."""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from dsdet.errors import DsdetError
from dsdet.models.whole_tensors import WholeTensors, already_whole

NORMS = ("batchnorm", "frozen_batchnorm", "sync_batchnorm")


def _frozen_copy(bn: nn.BatchNorm2d, whole: WholeTensors) -> FrozenBatchNorm2d:
    """A FrozenBatchNorm2d holding `bn`'s affine parameters and running statistics."""
    frozen = FrozenBatchNorm2d(bn.num_features, eps=bn.eps)
    with torch.no_grad(), whole(list(bn.parameters(recurse=False)), False):
        if bn.affine:
            frozen.weight.copy_(bn.weight)
            frozen.bias.copy_(bn.bias)
        if bn.track_running_stats:
            frozen.running_mean.copy_(bn.running_mean)
            frozen.running_var.copy_(bn.running_var)
    return frozen.to(next(itertools.chain(bn.buffers(), bn.parameters())).device)


def _freeze(module: nn.Module, whole: WholeTensors) -> nn.Module:
    """Replace every BatchNorm2d under `module` (itself included) by a frozen copy."""
    if type(module) is nn.BatchNorm2d:
        return _frozen_copy(module, whole)
    for name, child in module.named_children():
        setattr(module, name, _freeze(child, whole))
    return module


def convert_norm(model: nn.Module, norm: str, whole: WholeTensors = already_whole) -> nn.Module:
    """Return `model` with its BatchNorm2d layers as `norm`: batchnorm, frozen_batchnorm or sync_batchnorm
    (SyncBatchNorm keeps the same parameter objects; frozen copies read them through `whole`)."""
    if norm == "batchnorm":
        return model
    if norm == "frozen_batchnorm":
        return _freeze(model, whole)
    if norm == "sync_batchnorm":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    raise DsdetError(f"model.norm: unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
