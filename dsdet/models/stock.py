"""Stock torchvision detectors, always built from scratch (no weights, no backbone weights)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn
from torchvision.models import detection
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.ssd import SSD

from dsdet.models.registry import register_model


def _from_scratch(builder: Callable[..., nn.Module], num_classes: int, **kwargs) -> nn.Module:
    """Call a torchvision detection builder with random initialisation only."""
    return builder(weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)


_STOCK = (
    (
        detection.ssdlite320_mobilenet_v3_large,
        SSD,
        "ssd",
        "SSDLite 320x320 on MobileNetV3-Large (reduced tail), depthwise-separable heads",
        {
            "whole_build_reason": "torchvision's builder runs the backbone to count its output channels, "
            "which partitioned parameters cannot do"
        },
    ),
    (
        detection.fasterrcnn_resnet50_fpn,
        detection.FasterRCNN,
        "faster-rcnn",
        "Faster R-CNN, ResNet-50 FPN backbone, RPN + RoIAlign box head",
        {},
    ),
    (
        detection.fasterrcnn_mobilenet_v3_large_fpn,
        detection.FasterRCNN,
        "faster-rcnn",
        "Faster R-CNN, MobileNetV3-Large FPN backbone (light two-stage detector)",
        {},
    ),
    (
        detection.maskrcnn_resnet50_fpn,
        detection.MaskRCNN,
        "mask-rcnn",
        "Mask R-CNN, ResNet-50 FPN: Faster R-CNN plus a per-instance mask head",
        {"targets": ("boxes", "labels", "masks")},
    ),
    (
        detection.retinanet_resnet50_fpn,
        detection.RetinaNet,
        "retinanet",
        "RetinaNet, ResNet-50 FPN, focal loss one-stage anchor-based detector",
        {},
    ),
    (
        detection.fcos_resnet50_fpn,
        detection.FCOS,
        "fcos",
        "FCOS, ResNet-50 FPN, anchor-free one-stage detector with centerness",
        {},
    ),
)

for _builder, _detector, _family, _description, _capabilities in _STOCK:
    register_model(
        _builder.__name__,
        family=_family,
        description=_description,
        stock=True,
        kwargs_from=(_builder, _detector),
        **_capabilities,
    )(partial(_from_scratch, _builder))


@register_model(
    "fasterrcnn_resnext50_32x4d_fpn",
    family="faster-rcnn",
    description="Faster R-CNN on a ResNeXt-50 32x4d FPN backbone, all layers trainable, BatchNorm",
    kwargs_from=(detection.FasterRCNN,),
)
def fasterrcnn_resnext50_32x4d_fpn(num_classes: int, **kwargs) -> nn.Module:
    """torchvision's FasterRCNN with a from-scratch ResNeXt-50 32x4d + FPN backbone."""
    backbone = resnet_fpn_backbone(
        backbone_name="resnext50_32x4d", weights=None, norm_layer=nn.BatchNorm2d, trainable_layers=5
    )
    return detection.FasterRCNN(backbone, num_classes=num_classes, **kwargs)
