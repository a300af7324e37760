"""The pipeline form of torchvision's Faster R-CNN: backbone body steps, the FPN, then RPN + RoI heads + loss.

The RPN and the RoI heads need the targets (anchor assignment, proposal sampling), which reach only the loss
function of the last stage; so the last layer owns their weights and passes the features through, and its
`loss` runs them exactly as GeneralizedRCNN.forward does.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import BackboneWithFPN

from dsdet.engine.pipeline.packing import PipelineLabels, image_list, unpack_targets
from dsdet.engine.pipeline.parts import (
    Carry,
    FeaturePyramidStep,
    PlainPart,
    canvas_stub,
    chain_steps,
    fpn_output_names,
)
from dsdet.errors import DsdetError


class RCNNHeadsStep(PlainPart):
    """Owns the RPN and RoI heads; forward passes the pyramid through, `loss` runs both heads with the targets."""

    loss_names = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")

    def __init__(self, model: FasterRCNN, feature_names: list[str]):
        super().__init__(model, ("rpn", "roi_heads"))
        self.feature_names = tuple(feature_names)
        self.last_losses: dict[str, Tensor] | None = None

    def forward(self, carry: Carry) -> Carry:
        return carry

    def loss(self, outputs: Carry, labels: PipelineLabels) -> Tensor:
        """Faster R-CNN's training loss (the sum of its loss dict) for the pyramid and the packed targets."""
        if not self.training:
            raise DsdetError(
                "Faster R-CNN computes losses only in training mode: evaluate the plain model "
                "(gather_plain_state_dict) instead of engine.eval_batch"
            )
        *maps, geometry = outputs
        features = OrderedDict(zip(self.feature_names, maps, strict=True))
        images = image_list(canvas_stub(geometry, maps[0]), geometry)
        targets = unpack_targets(*labels)
        proposals, proposal_losses = self.rpn(images, features, targets)
        _, detector_losses = self.roi_heads(features, proposals, images.image_sizes, targets)
        losses = {**detector_losses, **proposal_losses}
        self.last_losses = {name: losses[name].detach() for name in self.loss_names}
        return sum(losses.values())


def rcnn_layers(model: FasterRCNN) -> list[nn.Module]:
    """Body steps (one per block, each return layer emitting a map), the FPN, then the heads step."""
    name = type(model).__name__
    if model.roi_heads.has_mask() or model.roi_heads.has_keypoint():
        raise DsdetError(
            f"{name} has no pipeline form: mask and keypoint heads are not supported (Faster R-CNN is)"
        )
    backbone = model.backbone
    if not isinstance(backbone, BackboneWithFPN) or not isinstance(backbone.body, IntermediateLayerGetter):
        raise DsdetError(
            f"{name} has no pipeline form: its backbone {type(backbone).__name__} is not a BackboneWithFPN"
        )
    body = backbone.body
    children = list(body._modules)
    steps = chain_steps(
        model, [(f"backbone.body.{child}", child in body.return_layers) for child in children]
    )
    in_names = [body.return_layers[child] for child in children if child in body.return_layers]
    pyramid = FeaturePyramidStep(model, "backbone.fpn", in_names)
    return [*steps, pyramid, RCNNHeadsStep(model, fpn_output_names(backbone.fpn, in_names))]
