"""Channels-last convolutions: every convolution really sees NHWC inputs, and losses and gradients match NCHW.

Gradients are compared with frozen BatchNorm: with batch statistics over two images these from-scratch
networks are so ill-conditioned that float32 gradients differ from float64 ones by about 1 % in either layout
(measured), which would hide a real layout bug; losses are compared with both."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dsdet.models import build_model

MODELS = {
    "yolo": {},
    "ssdlite320_mobilenet_v3_large": {},
    "fasterrcnn_mobilenet_v3_large_fpn": {"min_size": 128, "max_size": 128},
}


def batch() -> tuple[list[torch.Tensor], list[dict]]:
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 128, 160, generator=generator) for _ in range(2)]
    boxes = torch.tensor([[10.0, 20.0, 90.0, 100.0], [40.0, 30.0, 150.0, 120.0]])
    return images, [{"boxes": boxes, "labels": torch.tensor([1, 2])} for _ in images]


def losses_and_gradient(model: nn.Module) -> tuple[dict[str, float], torch.Tensor]:
    """The losses and all parameter gradients (one vector) of one training batch."""
    torch.manual_seed(1)  # the same proposal / anchor sampling every time
    losses = model(*batch())
    sum(losses.values()).backward()
    gradient = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return {k: float(v.detach()) for k, v in losses.items()}, gradient


@pytest.mark.parametrize("norm", ["frozen_batchnorm", "batchnorm"])
@pytest.mark.parametrize("name", MODELS)
def test_channels_last_gives_the_same_losses_and_gradients(name, norm):
    torch.manual_seed(0)
    nchw_model = build_model(name, 3, norm=norm, **MODELS[name])
    torch.manual_seed(0)
    nhwc_model = build_model(name, 3, norm=norm, channels_last=True, **MODELS[name])
    nhwc_inputs = []
    for module in nhwc_model.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(
                lambda _m, args, _out: nhwc_inputs.append(
                    args[0].is_contiguous(memory_format=torch.channels_last)
                )
            )

    nchw_losses, nchw = losses_and_gradient(nchw_model)
    nhwc_losses, nhwc = losses_and_gradient(nhwc_model)

    assert nhwc_inputs and all(nhwc_inputs)
    assert nhwc_losses == pytest.approx(nchw_losses, rel=1e-4, abs=1e-5)
    if norm == "frozen_batchnorm":
        assert float(nchw.norm()) > 0
        assert float((nhwc - nchw).norm() / nchw.norm()) < 1e-5
