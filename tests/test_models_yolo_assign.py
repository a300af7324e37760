"""The YOLO assigner on hand-made boxes: every box gets positives, each positive has one box."""

from __future__ import annotations

import torch

from dsdet.models.yolo import grid_points
from dsdet.models.yolo_loss import assign


def test_every_box_even_a_tiny_one_gets_its_own_positives():
    maps = [torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)]  # a 64x64 image
    points, strides = grid_points(maps, (8, 16, 32))
    gt_boxes = torch.tensor([[4.0, 4.0, 40.0, 40.0], [20.0, 20.0, 60.0, 60.0], [50.0, 5.0, 53.0, 8.0]])
    gt_classes = torch.tensor([0, 1, 0])
    g = torch.Generator().manual_seed(0)
    centers = points + torch.randn(points.shape, generator=g)
    pred_boxes = torch.cat([centers - 6, centers + 6], dim=1)
    pred_scores = torch.rand(len(points), 2, generator=g)

    result = assign(points, strides, pred_boxes, pred_scores, gt_boxes, gt_classes)

    assert result.positive.shape == (len(points),)
    assert result.matched_box.shape == result.iou.shape == (int(result.positive.sum()),)
    assert set(result.matched_box.tolist()) == {0, 1, 2}
    positive_points = points[result.positive]
    for box_index in range(len(gt_boxes)):
        near = positive_points[result.matched_box == box_index]
        center = (gt_boxes[box_index, :2] + gt_boxes[box_index, 2:]) / 2
        assert float((near - center).abs().max()) <= 2.5 * 32  # positives sit around their box
    assert bool(((result.iou >= 0) & (result.iou <= 1)).all())


def test_no_boxes_means_no_positives():
    maps = [torch.zeros(1, 1, 4, 4)]
    points, strides = grid_points(maps, (8,))
    result = assign(
        points,
        strides,
        torch.zeros(16, 4),
        torch.rand(16, 2),
        torch.zeros(0, 4),
        torch.zeros(0, dtype=torch.long),
    )
    assert not result.positive.any() and result.matched_box.numel() == 0
