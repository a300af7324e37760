"""What crosses a stage boundary: the layers' carry folded into one flat float tensor plus int64 shapes.

DeepSpeed sends tuples of tensors between stages and runs one backward pass per floating-point tensor a stage
sends; several feature maps sharing one graph would each replay the backward of the layers below them. Sending
all maps as one flat tensor costs a copy and keeps it to a single backward pass.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dsdet.engine.pipeline.parts import Carry

Boundary = tuple[Tensor, Tensor, Tensor]


def fold(carry: Carry) -> Boundary:
    """`(*float maps, geometry)` as `(flat float [N], shapes int64 [n, 4], geometry)`."""
    *maps, geometry = carry
    flat = torch.cat([m.reshape(-1) for m in maps])
    if torch.is_grad_enabled() and not flat.requires_grad:
        flat.requires_grad_()  # frozen layers only: DeepSpeed still runs backward from what a stage sends
    shapes = torch.tensor([list(m.shape) for m in maps], dtype=torch.int64, device=geometry.device)
    return flat, shapes, geometry


def unfold(boundary: Boundary) -> Carry:
    """The inverse of `fold`: views of the flat tensor in the original shapes, then the geometry."""
    flat, shapes, geometry = boundary
    sizes = shapes.prod(dim=1).tolist()
    maps = [part.view(shape) for part, shape in zip(flat.split(sizes), shapes.tolist(), strict=True)]
    return (*maps, geometry)
