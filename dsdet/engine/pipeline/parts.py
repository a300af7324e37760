"""Pipeline layers made of a plain detector's own submodules, kept under their plain dotted names.

Between layers flows a tuple `(*feature maps, running tensor, geometry)`: the feature maps emitted so far,
the tensor the next backbone module consumes (itself a feature map when the previous module emitted it) and
the int64 geometry of the packed batch (see `boundary` for how it crosses stage boundaries).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from dsdet.errors import DsdetError

Carry = tuple[Tensor, ...]


def adopt(owner: nn.Module, model: nn.Module, path: str) -> None:
    """Register `model`'s submodule, parameter or buffer at dotted `path` on `owner` under the same path."""
    *parents, leaf = path.split(".")
    container, source = owner, model
    for name in parents:
        source = getattr(source, name)
        if name not in container._modules:
            container.add_module(name, nn.Module())
        container = container._modules[name]
    item = getattr(source, leaf)
    if isinstance(item, nn.Module):
        container.add_module(leaf, item)
    elif isinstance(item, nn.Parameter):
        container.register_parameter(leaf, item)
    else:
        container.register_buffer(leaf, item, persistent=leaf not in source._non_persistent_buffers_set)


class PlainPart(nn.Module):
    """A pipeline layer owning parts of a plain detector, so its state dict keys are the plain model's keys."""

    def __init__(self, model: nn.Module, paths: Sequence[str]):
        super().__init__()
        self.paths = tuple(paths)
        for path in self.paths:
            adopt(self, model, path)


def canvas_stub(geometry: Tensor, like: Tensor) -> Tensor:
    """An empty [B, 0, H, W] tensor with the packed images' shape: what anchor generators read of the images."""
    height, width = geometry[0, 2:].tolist()
    return like.new_empty((geometry.shape[0], 0, height, width))


class ChainStep(PlainPart):
    """Runs a few consecutive backbone modules on the running tensor; keeps that tensor when it is a feature map."""

    def __init__(self, model: nn.Module, paths: Sequence[str], *, keep_input: bool):
        super().__init__(model, paths)
        self.keep_input = keep_input

    def forward(self, carry: Carry) -> Carry:
        *tensors, geometry = carry
        x = tensors[-1]
        for path in self.paths:
            x = self.get_submodule(path)(x)
        kept = tensors if self.keep_input else tensors[:-1]
        return (*kept, x, geometry)


class WholeBackbone(PlainPart):
    """A backbone without a finer pipeline form, run as one layer: images in, all its feature maps out."""

    def __init__(self, model: nn.Module):
        super().__init__(model, ("backbone",))

    def forward(self, carry: Carry) -> Carry:
        images, geometry = carry
        features = self.backbone(images)
        maps = [features] if isinstance(features, Tensor) else list(features.values())
        return (*maps, geometry)


def _chain_modules(model: nn.Module, parts: Sequence[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """(path, emits) per module: Sequential parts become their children, the last child emitting for the part."""
    modules = []
    for path, emits in parts:
        part = model.get_submodule(path)
        children = [f"{path}.{name}" for name in part._modules] if isinstance(part, nn.Sequential) else [path]
        modules += [(child, emits and index == len(children) - 1) for index, child in enumerate(children)]
    return modules


def chain_steps(model: nn.Module, parts: Sequence[tuple[str, bool]]) -> list[ChainStep]:
    """ChainSteps for `parts` (path, emits a feature map) run in order, about one module with parameters each.

    Parameter-free modules (ReLU, pooling) join the step before them, so no step starts with an in-place op
    (activation checkpointing recomputes a step from a leaf tensor); a step ends where a feature map is emitted.
    """
    groups: list[tuple[list[str], bool]] = []  # (paths, ends with an emitted map)
    group_has_params = False
    for path, emits in _chain_modules(model, parts):
        has_params = any(True for _ in model.get_submodule(path).parameters())
        if not groups or groups[-1][1] or (has_params and group_has_params):
            groups.append(([path], emits))
            group_has_params = has_params
        else:
            groups[-1] = (groups[-1][0] + [path], emits)
            group_has_params = group_has_params or has_params
    keeps = [False] + [emits for _, emits in groups[:-1]]
    return [ChainStep(model, paths, keep_input=keep) for (paths, _), keep in zip(groups, keeps, strict=True)]


def fpn_output_names(fpn: nn.Module, in_names: Sequence[str]) -> list[str]:
    """The names of a torchvision FeaturePyramidNetwork's outputs, without running it."""
    extra = fpn.extra_blocks
    if extra is None:
        return list(in_names)
    if isinstance(extra, LastLevelMaxPool):
        return [*in_names, "pool"]
    if isinstance(extra, LastLevelP6P7):
        return [*in_names, "p6", "p7"]
    raise DsdetError(
        f"FPN extra block {type(extra).__name__} has no pipeline form (LastLevelMaxPool or LastLevelP6P7)"
    )


class FeaturePyramidStep(PlainPart):
    """The FPN: the backbone body's named maps in, the pyramid's maps out."""

    def __init__(self, model: nn.Module, path: str, in_names: Sequence[str]):
        super().__init__(model, (path,))
        self.in_names = tuple(in_names)

    def forward(self, carry: Carry) -> Carry:
        *maps, geometry = carry
        pyramid = self.get_submodule(self.paths[0])(OrderedDict(zip(self.in_names, maps, strict=True)))
        return (*pyramid.values(), geometry)
