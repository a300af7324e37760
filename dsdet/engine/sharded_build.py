"""Build a model with its parameters partitioned as they are made (ZeRO-3's `deepspeed.zero.Init`), so no rank
ever holds the whole model.

`zero.Init` partitions each module's parameters when that module's constructor returns. Detector constructors
(torchvision's and dsdet's) then initialise their children's weights from the parent (`nn.init.kaiming_normal_`
over `self.modules()`, a prior bias on a head), which would write into empty partitions and silently keep the
default initialisation. While the model is constructed, every `torch.nn.init` function is therefore run on the
whole tensor: a partitioned parameter is gathered, initialised on every rank with the same random numbers as a
plain build draws, and partitioned again with rank 0's values. The steps after construction (weights, norm
layers) reach whole values through `gathered`."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator

import deepspeed
import torch
from torch import nn

from dsdet.engine.deepspeed_internals import is_partitioned
from dsdet.models import model_info
from dsdet.models.build import ModelSpec

log = logging.getLogger("dsdet.engine")

# The public initialisers of torch.nn.init that write into a tensor.
INIT_FUNCTIONS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "dirac_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
    "sparse_",
)


def gathered(tensors: list[torch.Tensor], modify: bool) -> contextlib.AbstractContextManager:
    """The whole values of those `tensors` ZeRO-3 has partitioned, for reading or (rank 0's values kept) writing."""
    partitioned = [t for t in tensors if is_partitioned(t)]
    if not partitioned:
        return contextlib.nullcontext()
    return deepspeed.zero.GatheredParameters(partitioned, modifier_rank=0 if modify else None)


def _on_whole_tensor(init):
    @functools.wraps(init)
    def initialise(tensor: torch.Tensor, *args, **kwargs):
        with gathered([tensor], modify=True):
            return init(tensor, *args, **kwargs)

    return initialise


@contextlib.contextmanager
def init_functions_on_whole_tensors() -> Iterator[None]:
    """Within the context, `torch.nn.init` initialisers gather a partitioned parameter before writing it."""
    originals = {name: getattr(torch.nn.init, name) for name in INIT_FUNCTIONS}
    try:
        for name, init in originals.items():
            setattr(torch.nn.init, name, _on_whole_tensor(init))
        yield
    finally:
        for name, init in originals.items():
            setattr(torch.nn.init, name, init)


def build_partitioned(spec: ModelSpec, ds_config: dict) -> nn.Module:
    """`spec`'s model constructed under `deepspeed.zero.Init` of `ds_config`, then finished (weights, norm layers,
    kernels) one gathered module at a time; the same initial weights as `spec()` for the same seed.

    A model whose registry entry gives a `whole_build_reason` is built whole on every rank instead and then
    partitioned one tensor at a time (rank 0's values kept)."""
    reason = model_info(spec.name).whole_build_reason
    if reason is not None:
        log.info("ZeRO-3: %s is built whole, then partitioned: %s", spec.name, reason)
        model = spec()
        deepspeed.zero.Init(module=model, config_dict_or_path=ds_config, mem_efficient_linear=False)
        return model
    with (
        deepspeed.zero.Init(config_dict_or_path=ds_config, mem_efficient_linear=False),
        init_functions_on_whole_tensors(),
    ):
        model = spec.construct()
    return spec.finish(model, gathered)
