"""YOLO target assignment (SimOTA-lite with center sampling) and losses (BCE objectness/class, GIoU box)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou, generalized_box_iou_loss

CENTER_RADIUS = 2.5  # grid cells: how far from a box center a point may be to count as "central"
TOP_IOUS_FOR_K = 10  # dynamic k of a box = sum of its best IoUs with candidate predictions
IOU_COST_WEIGHT = 3.0
OUTSIDE_COST = 1e5  # per condition missed (inside the box, near its center): such points are a last resort
BOX_LOSS_WEIGHT = 5.0


@dataclass
class Assignment:
    """Which points are positives for one image, the box each one matched, and their predicted IoU."""

    positive: Tensor  # (N,) bool
    matched_box: Tensor  # (P,) index into the image's ground-truth boxes, for the positive points
    iou: Tensor  # (P,) IoU of each positive point's predicted box with its matched box


@torch.no_grad()
def assign(
    points: Tensor,
    strides: Tensor,
    pred_boxes: Tensor,
    pred_scores: Tensor,
    gt_boxes: Tensor,
    gt_classes: Tensor,
) -> Assignment:
    """Give each ground-truth box its dynamic-k cheapest points; a point claimed twice keeps its cheapest box."""
    num_points = points.shape[0]
    if gt_boxes.numel() == 0:
        empty = torch.zeros(0, dtype=torch.long, device=points.device)
        return Assignment(
            torch.zeros(num_points, dtype=torch.bool, device=points.device), empty, empty.float()
        )
    x, y = points[:, 0], points[:, 1]
    in_box = (x > gt_boxes[:, 0:1]) & (x < gt_boxes[:, 2:3]) & (y > gt_boxes[:, 1:2]) & (y < gt_boxes[:, 3:4])
    centers = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    radius = CENTER_RADIUS * strides
    in_center = ((x - centers[:, 0:1]).abs() < radius) & ((y - centers[:, 1:2]).abs() < radius)
    ious = box_iou(gt_boxes, pred_boxes)  # (G, N)
    class_cost = -torch.log(pred_scores[:, gt_classes].T.clamp(min=1e-8))
    outside = (~in_box).float() + (~in_center).float()
    cost = class_cost + IOU_COST_WEIGHT * -torch.log(ious + 1e-8) + OUTSIDE_COST * outside
    top_ious = ious.masked_fill(~(in_box | in_center), 0).topk(min(TOP_IOUS_FOR_K, num_points), dim=1).values
    dynamic_k = top_ious.sum(dim=1).int().clamp(min=1)
    matching = torch.zeros_like(cost, dtype=torch.bool)
    for g, k in enumerate(dynamic_k.tolist()):
        matching[g, cost[g].topk(k, largest=False).indices] = True
    claimed = matching.sum(dim=0) > 1
    if claimed.any():
        cheapest = cost[:, claimed].argmin(dim=0)
        matching[:, claimed] = False
        matching[cheapest, claimed.nonzero().squeeze(1)] = True
    positive = matching.any(dim=0)
    matched_box = matching[:, positive].int().argmax(dim=0)
    return Assignment(positive, matched_box, ious[matched_box, positive])


def yolo_losses(
    points: Tensor,
    strides: Tensor,
    objectness: Tensor,
    class_logits: Tensor,
    pred_boxes: Tensor,
    targets: list[dict[str, Tensor]],
) -> dict[str, Tensor]:
    """Objectness and class BCE plus GIoU box loss for a batch, each normalised by the number of positives.

    `objectness` (B, N), `class_logits` (B, N, K), `pred_boxes` (B, N, 4) XYXY; target labels are 1..K.
    """
    scores = (class_logits.detach().sigmoid() * objectness.detach().sigmoid().unsqueeze(-1)).float()
    obj_loss = class_loss = box_loss = objectness.sum() * 0
    num_positive = 0
    for i, target in enumerate(targets):
        gt_boxes, gt_classes = target["boxes"], target["labels"] - 1
        a = assign(points, strides, pred_boxes[i].detach().float(), scores[i], gt_boxes, gt_classes)
        num_positive += int(a.positive.sum())
        obj_loss = obj_loss + F.binary_cross_entropy_with_logits(
            objectness[i], a.positive.to(objectness.dtype), reduction="sum"
        )
        class_target = F.one_hot(gt_classes[a.matched_box], class_logits.shape[-1]).to(class_logits.dtype)
        class_target = class_target * a.iou.unsqueeze(1).to(class_logits.dtype)
        class_loss = class_loss + F.binary_cross_entropy_with_logits(
            class_logits[i][a.positive], class_target, reduction="sum"
        )
        box_loss = box_loss + generalized_box_iou_loss(
            pred_boxes[i][a.positive], gt_boxes[a.matched_box], reduction="sum"
        )
    norm = max(num_positive, 1)
    return {
        "loss_objectness": obj_loss / norm,
        "loss_classifier": class_loss / norm,
        "loss_box_reg": BOX_LOSS_WEIGHT * box_loss / norm,
    }
