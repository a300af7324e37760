"""The pipeline form of torchvision's SSD / SSDLite: backbone steps, then the head, then SSD's own loss."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.ssdlite import SSDLiteFeatureExtractorMobileNet
from torchvision.ops import boxes as box_ops

from dsdet.engine.pipeline.packing import PipelineLabels, image_list, unpack_targets
from dsdet.engine.pipeline.parts import Carry, PlainPart, WholeBackbone, canvas_stub, chain_steps
from dsdet.models.ssdlite_mobilenet_v2 import SSDLiteMobileNetV2Backbone
from dsdet.models.tinyssd import TinySSDBackbone


def _indexed(prefix: str, modules: nn.Module) -> list[str]:
    return [f"{prefix}.{name}" for name in modules._modules]


# Backbones whose forward chains these parts, each emitting one feature map: their finer pipeline form.
BACKBONE_PARTS: dict[type, Callable[[nn.Module], list[str]]] = {
    SSDLiteFeatureExtractorMobileNet: lambda b: _indexed("features", b.features) + _indexed("extra", b.extra),
    SSDLiteMobileNetV2Backbone: lambda b: ["to_stride16", "to_stride32", *_indexed("extra", b.extra)],
    TinySSDBackbone: lambda b: _indexed("blocks", b.blocks),
}


class SSDHeadStep(PlainPart):
    """SSD's head and default boxes; the loss (matching and SSD's compute_loss) runs on its outputs."""

    loss_names = ("bbox_regression", "classification")

    def __init__(self, model: SSD):
        super().__init__(model, ("head", "anchor_generator"))
        self._matcher = model.proposal_matcher
        self._compute_loss = model.compute_loss  # a bound method: SSD's box coder and negative ratio
        self.last_losses: dict[str, Tensor] | None = None

    def forward(self, carry: Carry) -> tuple[Tensor, Tensor, Tensor]:
        *maps, geometry = carry
        head = self.head(maps)
        anchors = self.anchor_generator(image_list(canvas_stub(geometry, maps[0]), geometry), maps)
        return head["bbox_regression"], head["cls_logits"], torch.stack(anchors)

    def loss(self, outputs: tuple[Tensor, Tensor, Tensor], labels: PipelineLabels) -> Tensor:
        """SSD's training loss (the sum of its loss dict) for the head outputs and the packed targets."""
        bbox_regression, cls_logits, anchors = outputs
        targets = unpack_targets(*labels)
        matched_idxs = []
        for anchors_per_image, target in zip(anchors, targets, strict=True):
            if target["boxes"].numel() == 0:
                matched_idxs.append(
                    torch.full((anchors_per_image.size(0),), -1, dtype=torch.int64, device=anchors.device)
                )
                continue
            matched_idxs.append(self._matcher(box_ops.box_iou(target["boxes"], anchors_per_image)))
        head_outputs = {"bbox_regression": bbox_regression, "cls_logits": cls_logits}
        losses = self._compute_loss(targets, head_outputs, list(anchors), matched_idxs)
        self.last_losses = {name: losses[name].detach() for name in self.loss_names}
        return sum(losses.values())


def ssd_layers(model: SSD) -> list[nn.Module]:
    """Backbone steps (finer for known backbones, else the whole backbone), then the head step."""
    backbone = model.backbone
    parts = BACKBONE_PARTS.get(type(backbone))
    if parts is None:
        steps: list[nn.Module] = [WholeBackbone(model)]
    else:
        steps = list(chain_steps(model, [(f"backbone.{path}", True) for path in parts(backbone)]))
    return [*steps, SSDHeadStep(model)]
