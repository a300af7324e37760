"""How model-building steps reach the whole values of parameters that may be partitioned (ZeRO-3)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch

# A context in which the given tensors hold their whole values: read only, or modified when the flag is True
# (the values of one rank are then kept on every rank). Under ZeRO-3 the engine passes one that gathers
# partitioned parameters; a plainly built model needs nothing.
WholeTensors = Callable[[list[torch.Tensor], bool], AbstractContextManager]


def already_whole(_tensors: list[torch.Tensor], _modify: bool) -> AbstractContextManager:
    """The `WholeTensors` of a model that is not partitioned."""
    return nullcontext()
