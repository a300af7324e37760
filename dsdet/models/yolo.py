"""A YOLO-style anchor-free one-stage detector: CSP backbone, PAN neck, decoupled heads at strides 8/16/32."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import batched_nms, clip_boxes_to_image

from dsdet.models.mobilenet_v2 import make_divisible
from dsdet.models.registry import register_model
from dsdet.models.yolo_blocks import CSPDarknet, PANNeck, conv
from dsdet.models.yolo_loss import yolo_losses

STRIDES = (8, 16, 32)
PRIOR_PROBABILITY = 0.01
HEAD_BASE_WIDTH = 256


class DecoupledHead(nn.Module):
    """Per level: a 1x1 stem, then one branch for class logits and one for box distances + objectness."""

    def __init__(self, in_channels: list[int], width: int, num_classes: int):
        super().__init__()
        self.stems = nn.ModuleList(conv(c, width) for c in in_channels)
        self.class_branches = nn.ModuleList(conv(width, width, 3) for _ in in_channels)
        self.box_branches = nn.ModuleList(conv(width, width, 3) for _ in in_channels)
        self.class_preds = nn.ModuleList(nn.Conv2d(width, num_classes, 1) for _ in in_channels)
        self.box_preds = nn.ModuleList(nn.Conv2d(width, 4, 1) for _ in in_channels)
        self.obj_preds = nn.ModuleList(nn.Conv2d(width, 1, 1) for _ in in_channels)
        prior_bias = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
        for pred in (*self.class_preds, *self.obj_preds):
            nn.init.constant_(pred.bias, prior_bias)

    def forward(self, maps: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Concatenated over levels: class logits (B, N, K), box distances (B, N, 4), objectness (B, N)."""
        classes, boxes, objectness = [], [], []
        for i, x in enumerate(maps):
            x = self.stems[i](x)
            class_features, box_features = self.class_branches[i](x), self.box_branches[i](x)
            classes.append(self.class_preds[i](class_features).flatten(2))
            boxes.append(self.box_preds[i](box_features).flatten(2))
            objectness.append(self.obj_preds[i](box_features).flatten(2))
        return (
            torch.cat(classes, 2).transpose(1, 2),
            torch.cat(boxes, 2).transpose(1, 2),
            torch.cat(objectness, 2).squeeze(1),
        )


def grid_points(maps: list[Tensor], strides: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Cell centres (N, 2) in pixels and the stride (N,) of each, in the order of the flattened maps."""
    points, point_strides = [], []
    for x, stride in zip(maps, strides, strict=True):
        h, w = x.shape[-2:]
        ys, xs = torch.meshgrid(
            torch.arange(h, device=x.device, dtype=torch.float32),
            torch.arange(w, device=x.device, dtype=torch.float32),
            indexing="ij",
        )
        points.append(torch.stack([xs.flatten(), ys.flatten()], dim=1).add(0.5).mul(stride))
        point_strides.append(torch.full((h * w,), float(stride), device=x.device))
    return torch.cat(points), torch.cat(point_strides)


def decode_boxes(points: Tensor, strides: Tensor, distances: Tensor) -> Tensor:
    """XYXY boxes from non-negative left/top/right/bottom distances (softplus, in units of stride)."""
    ltrb = F.softplus(distances) * strides.unsqueeze(-1)
    return torch.cat([points - ltrb[..., :2], points + ltrb[..., 2:]], dim=-1)


class YOLO(nn.Module):
    """Anchor-free YOLO detector with torchvision's resize/normalise/postprocess transform."""

    def __init__(
        self,
        num_classes: int,
        width_mult: float = 0.25,
        depth: int = 1,
        image_size: int = 256,
        score_thresh: float = 0.01,
        nms_thresh: float = 0.6,
        detections_per_img: int = 100,
        topk_candidates: int = 1000,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
    ):
        super().__init__()
        if width_mult <= 0 or depth < 1 or image_size < 32:
            raise ValueError(
                f"need width_mult > 0, depth >= 1, image_size >= 32; got {width_mult}, {depth}, {image_size}"
            )
        self.transform = GeneralizedRCNNTransform(
            image_size,
            image_size,
            image_mean or [0.485, 0.456, 0.406],
            image_std or [0.229, 0.224, 0.225],
            size_divisible=max(STRIDES),
            fixed_size=(image_size, image_size),
        )
        self.backbone = CSPDarknet(width_mult, depth)
        self.neck = PANNeck(self.backbone.out_channels, depth)
        head_width = make_divisible(HEAD_BASE_WIDTH * width_mult)
        self.head = DecoupledHead(self.neck.out_channels, head_width, num_classes - 1)
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.topk_candidates = topk_candidates

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        """Training: dict of losses (targets required). Eval: per-image boxes/scores/labels in input coordinates."""
        if self.training and targets is None:
            raise ValueError("targets are required in training mode")
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batch, targets = self.transform(images, targets)
        maps = self.neck(self.backbone(batch.tensors))
        class_logits, distances, objectness = self.head(maps)
        points, strides = grid_points(maps, STRIDES)
        boxes = decode_boxes(points, strides, distances)
        if self.training:
            return yolo_losses(points, strides, objectness, class_logits, boxes, targets)
        detections = self.postprocess(class_logits, objectness, boxes, batch.image_sizes)
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)

    def postprocess(
        self, class_logits: Tensor, objectness: Tensor, boxes: Tensor, image_sizes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Score = sigmoid(class) * sigmoid(objectness); threshold, keep the top-k, class-wise NMS."""
        scores = (
            class_logits.sigmoid() * objectness.sigmoid().unsqueeze(-1)
        ).float()  # NMS needs float32 on CPU
        boxes = boxes.float()
        num_classes = scores.shape[-1]
        results = []
        for image_scores, image_boxes, size in zip(scores, boxes, image_sizes, strict=True):
            flat = image_scores.flatten()
            keep = torch.nonzero(flat > self.score_thresh).squeeze(1)
            top = flat[keep].topk(min(self.topk_candidates, keep.numel())).indices
            keep = keep[top]
            point_index, class_index = keep // num_classes, keep % num_classes
            kept_boxes = clip_boxes_to_image(image_boxes[point_index], size)
            kept_scores = flat[keep]
            final = batched_nms(kept_boxes, kept_scores, class_index, self.nms_thresh)[
                : self.detections_per_img
            ]
            results.append(
                {"boxes": kept_boxes[final], "scores": kept_scores[final], "labels": class_index[final] + 1}
            )
        return results


@register_model(
    "yolo",
    family="yolo",
    description="YOLO-style anchor-free detector: CSP-Darknet-lite, PAN neck, decoupled heads, SimOTA-lite",
    kwargs_from=(YOLO,),
)
def yolo(num_classes: int, **kwargs) -> nn.Module:
    """The dsdet YOLO (width_mult, depth and image_size set its size)."""
    return YOLO(num_classes, **kwargs)
