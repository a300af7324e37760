"""SSDLite on a dsdet MobileNetV2: features at strides 16 and 32 plus four depthwise-separable extra layers."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import partial

from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.ssdlite import SSDLiteHead
from torchvision.ops import Conv2dNormActivation

from dsdet.models.mobilenet_v2 import MobileNetV2, make_divisible
from dsdet.models.registry import register_model

EXTRA_CHANNELS = (512, 256, 256, 128)


def _extra_layer(in_channels: int, out_channels: int, norm_layer: Callable) -> nn.Sequential:
    """1x1 reduce -> depthwise 3x3 stride 2 -> 1x1 expand, all with ReLU6 (halves the feature map)."""
    mid = out_channels // 2
    return nn.Sequential(
        Conv2dNormActivation(in_channels, mid, 1, norm_layer=norm_layer, activation_layer=nn.ReLU6),
        Conv2dNormActivation(
            mid, mid, 3, stride=2, groups=mid, norm_layer=norm_layer, activation_layer=nn.ReLU6
        ),
        Conv2dNormActivation(mid, out_channels, 1, norm_layer=norm_layer, activation_layer=nn.ReLU6),
    )


class SSDLiteMobileNetV2Backbone(nn.Module):
    """Six feature maps: the stride-16 expansion layer, the final 1x1 conv, then four extra layers."""

    def __init__(self, width_mult: float, norm_layer: Callable):
        super().__init__()
        trunk = MobileNetV2(width_mult, norm_layer)
        split = trunk.last_stride2_index()
        block = trunk.features[split]
        # The first SSDLite map taps the expansion output of the first stride-32 block, as in the paper.
        self.to_stride16 = nn.Sequential(*trunk.features[:split], block.expand)
        self.to_stride32 = nn.Sequential(block.depthwise, block.project, *trunk.features[split + 1 :])
        extra_out = [max(16, make_divisible(c * width_mult)) for c in EXTRA_CHANNELS]
        extra_in = [trunk.out_channels, *extra_out[:-1]]
        self.extra = nn.ModuleList(
            _extra_layer(i, o, norm_layer) for i, o in zip(extra_in, extra_out, strict=True)
        )
        for module in self.extra.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
        self.out_channels = [block.hidden_channels, trunk.out_channels, *extra_out]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        maps = [self.to_stride16(x)]
        maps.append(self.to_stride32(maps[-1]))
        for layer in self.extra:
            maps.append(layer(maps[-1]))
        return OrderedDict((str(i), m) for i, m in enumerate(maps))


@register_model(
    "ssdlite_mobilenet_v2",
    family="ssd",
    description="SSDLite on MobileNetV2 (inverted residuals, ReLU6, width_mult), depthwise-separable heads",
    kwargs_from=(SSD,),
)
def ssdlite_mobilenet_v2(
    num_classes: int, width_mult: float = 1.0, image_size: int = 320, **kwargs
) -> nn.Module:
    """torchvision's SSD with the dsdet MobileNetV2 SSDLite backbone and SSDLiteHead, at image_size²."""
    norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    backbone = SSDLiteMobileNetV2Backbone(width_mult, norm_layer)
    anchors = DefaultBoxGenerator([[2, 3] for _ in backbone.out_channels], min_ratio=0.2, max_ratio=0.95)
    head = SSDLiteHead(backbone.out_channels, anchors.num_anchors_per_location(), num_classes, norm_layer)
    settings = {
        "score_thresh": 0.001,
        "nms_thresh": 0.55,
        "detections_per_img": 300,
        "topk_candidates": 300,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        **kwargs,
    }
    return SSD(backbone, anchors, (image_size, image_size), num_classes, head=head, **settings)
