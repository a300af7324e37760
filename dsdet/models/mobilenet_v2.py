"""MobileNetV2 feature extractor: inverted residuals with linear bottlenecks, ReLU6 and a width multiplier."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

# (expansion t, output channels c, repeats n, first stride s) per stage, from the MobileNetV2 paper.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to the nearest multiple of `divisor`, never losing more than 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise 3x3 -> linear 1x1 projection, with a shortcut when shapes allow."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, expansion: int, norm_layer: Callable
    ):
        super().__init__()
        hidden = in_channels * expansion
        self.use_shortcut = stride == 1 and in_channels == out_channels
        self.expand = (
            Conv2dNormActivation(in_channels, hidden, 1, norm_layer=norm_layer, activation_layer=nn.ReLU6)
            if expansion != 1
            else nn.Identity()
        )
        self.depthwise = Conv2dNormActivation(
            hidden, hidden, 3, stride=stride, groups=hidden, norm_layer=norm_layer, activation_layer=nn.ReLU6
        )
        # Linear bottleneck: no activation after the projection.
        self.project = Conv2dNormActivation(
            hidden, out_channels, 1, norm_layer=norm_layer, activation_layer=None
        )
        self.hidden_channels = hidden

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.use_shortcut else out


class MobileNetV2(nn.Module):
    """The MobileNetV2 convolutional trunk (no classifier); `features` is a flat Sequential of blocks."""

    def __init__(self, width_mult: float = 1.0, norm_layer: Callable = nn.BatchNorm2d):
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        channels = make_divisible(STEM_CHANNELS * width_mult)
        layers: list[nn.Module] = [
            Conv2dNormActivation(3, channels, 3, stride=2, norm_layer=norm_layer, activation_layer=nn.ReLU6)
        ]
        for expansion, out, repeats, stride in INVERTED_RESIDUAL_SETTING:
            out_channels = make_divisible(out * width_mult)
            for i in range(repeats):
                layers.append(
                    InvertedResidual(channels, out_channels, stride if i == 0 else 1, expansion, norm_layer)
                )
                channels = out_channels
        self.out_channels = make_divisible(LAST_CHANNELS * max(1.0, width_mult))
        layers.append(
            Conv2dNormActivation(
                channels, self.out_channels, 1, norm_layer=norm_layer, activation_layer=nn.ReLU6
            )
        )
        self.features = nn.Sequential(*layers)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")

    def last_stride2_index(self) -> int:
        """Index in `features` of the last down-sampling block (output stride 16 -> 32)."""
        return max(
            i
            for i, m in enumerate(self.features)
            if isinstance(m, InvertedResidual) and m.depthwise[0].stride == (2, 2)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)
