"""TinySSD (Dive into Deep Learning): a small VGG-like base net and five multiscale SSD feature maps."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD, SSDHead

from dsdet.models.registry import register_model

BASE_CHANNELS = (16, 32, 64)
SCALE_CHANNELS = (64, 128, 128, 128, 128)
# Anchor sizes per map are s_k and sqrt(s_k * s_k+1): (0.2, 0.272), (0.37, 0.447), ... (0.88, 0.961).
ANCHOR_SCALES = (0.2, 0.37, 0.54, 0.71, 0.88, 1.05)


def down_sample_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 conv-BN-ReLU layers, then a 2x2 max-pool that halves height and width."""
    layers: list[nn.Module] = []
    for channels in (in_channels, out_channels):
        layers += [
            nn.Conv2d(channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        ]
    layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class TinySSDBackbone(nn.Module):
    """Base net (3 down-sampling blocks, stride 8), two more down-sampling blocks and a global max-pool."""

    def __init__(self):
        super().__init__()
        base, channels = [], 3
        for out in BASE_CHANNELS:
            base.append(down_sample_block(channels, out))
            channels = out
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(*base),
                down_sample_block(SCALE_CHANNELS[0], SCALE_CHANNELS[1]),
                down_sample_block(SCALE_CHANNELS[1], SCALE_CHANNELS[2]),
                down_sample_block(SCALE_CHANNELS[2], SCALE_CHANNELS[3]),
                nn.AdaptiveMaxPool2d((1, 1)),
            ]
        )
        self.out_channels = list(SCALE_CHANNELS)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        maps = OrderedDict()
        for i, block in enumerate(self.blocks):
            x = block(x)
            maps[str(i)] = x
        return maps


@register_model(
    "tinyssd",
    family="ssd",
    description="TinySSD from Dive into Deep Learning: 5 multiscale maps, 4 anchors per cell, tiny and fast",
    kwargs_from=(SSD,),
)
def tinyssd(num_classes: int, image_size: int = 256, **kwargs) -> nn.Module:
    """torchvision's SSD (matching, hard-negative mining, NMS) around the TinySSD backbone."""
    backbone = TinySSDBackbone()
    anchors = DefaultBoxGenerator([[2] for _ in SCALE_CHANNELS], scales=list(ANCHOR_SCALES))
    head = SSDHead(backbone.out_channels, anchors.num_anchors_per_location(), num_classes)
    return SSD(backbone, anchors, (image_size, image_size), num_classes, head=head, **kwargs)
