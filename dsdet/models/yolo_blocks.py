"""Building blocks of the dsdet YOLO: a CSP-Darknet-lite backbone and a PAN-lite neck."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

from dsdet.models.mobilenet_v2 import make_divisible

# Backbone widths at width_mult = 1: stem, then the outputs of the strides 4, 8, 16 and 32 stages.
BASE_WIDTHS = (64, 128, 256, 512, 1024)


def conv(in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1) -> nn.Module:
    """Conv-BatchNorm-SiLU with 'same' padding."""
    return Conv2dNormActivation(
        in_channels, out_channels, kernel_size, stride=stride, activation_layer=nn.SiLU
    )


class Bottleneck(nn.Module):
    """1x1 then 3x3 conv, with an optional identity shortcut."""

    def __init__(self, channels: int, shortcut: bool):
        super().__init__()
        self.body = nn.Sequential(conv(channels, channels, 1), conv(channels, channels, 3))
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        return x + out if self.shortcut else out


class CSPBlock(nn.Module):
    """Cross-stage partial block: half the channels go through `depth` bottlenecks, then both halves merge."""

    def __init__(self, in_channels: int, out_channels: int, depth: int, shortcut: bool = True):
        super().__init__()
        hidden = out_channels // 2
        self.main = nn.Sequential(
            conv(in_channels, hidden), *(Bottleneck(hidden, shortcut) for _ in range(depth))
        )
        self.bypass = conv(in_channels, hidden)
        self.merge = conv(2 * hidden, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.merge(torch.cat([self.main(x), self.bypass(x)], dim=1))


class CSPDarknet(nn.Module):
    """Stem (stride 2) and four down-sampling CSP stages; returns the stride 8, 16 and 32 maps."""

    def __init__(self, width_mult: float, depth: int):
        super().__init__()
        widths = [make_divisible(w * width_mult) for w in BASE_WIDTHS]
        self.stem = conv(3, widths[0], 3, stride=2)
        self.stages = nn.ModuleList(
            nn.Sequential(conv(c_in, c_out, 3, stride=2), CSPBlock(c_out, c_out, depth))
            for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)
        )
        self.out_channels = widths[2:]

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps[1:]


class PANNeck(nn.Module):
    """Top-down then bottom-up path aggregation over (C3, C4, C5); outputs keep the input channel counts."""

    def __init__(self, channels: list[int], depth: int):
        super().__init__()
        c3, c4, c5 = channels
        self.reduce5 = conv(c5, c4)
        self.top_down4 = CSPBlock(2 * c4, c4, depth, shortcut=False)
        self.reduce4 = conv(c4, c3)
        self.top_down3 = CSPBlock(2 * c3, c3, depth, shortcut=False)
        self.down3 = conv(c3, c3, 3, stride=2)
        self.bottom_up4 = CSPBlock(2 * c3, c4, depth, shortcut=False)
        self.down4 = conv(c4, c4, 3, stride=2)
        self.bottom_up5 = CSPBlock(2 * c4, c5, depth, shortcut=False)
        self.out_channels = list(channels)

    @staticmethod
    def _up_cat(x: Tensor, skip: Tensor) -> Tensor:
        return torch.cat([nn.functional.interpolate(x, size=skip.shape[-2:], mode="nearest"), skip], dim=1)

    def forward(self, maps: list[Tensor]) -> list[Tensor]:
        c3, c4, c5 = maps
        lateral5 = self.reduce5(c5)
        lateral4 = self.reduce4(self.top_down4(self._up_cat(lateral5, c4)))
        p3 = self.top_down3(self._up_cat(lateral4, c3))
        p4 = self.bottom_up4(torch.cat([self.down3(p3), lateral4], dim=1))
        p5 = self.bottom_up5(torch.cat([self.down4(p4), lateral5], dim=1))
        return [p3, p4, p5]
