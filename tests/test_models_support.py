"""Shared helpers of the dsdet.models tests (no tests here): tiny images, targets, per-model settings, threads."""

from __future__ import annotations

import pytest
import torch

# Small inputs and proposal counts keep every model test fast on a slow CPU; low score thresholds make
# untrained models emit boxes.
_SMALL_RCNN = {
    "min_size": 128,
    "max_size": 128,
    "rpn_pre_nms_top_n_train": 200,
    "rpn_post_nms_top_n_train": 100,
    "rpn_pre_nms_top_n_test": 100,
    "rpn_post_nms_top_n_test": 50,
    "box_batch_size_per_image": 64,
    "box_detections_per_img": 20,
}
MODEL_TEST_KWARGS: dict[str, dict] = {
    "ssdlite320_mobilenet_v3_large": {},
    "fasterrcnn_resnet50_fpn": _SMALL_RCNN,
    "fasterrcnn_mobilenet_v3_large_fpn": _SMALL_RCNN,
    "fasterrcnn_resnext50_32x4d_fpn": _SMALL_RCNN,
    "maskrcnn_resnet50_fpn": _SMALL_RCNN,
    "retinanet_resnet50_fpn": {"min_size": 128, "max_size": 128, "score_thresh": 0.0},
    "fcos_resnet50_fpn": {"min_size": 128, "max_size": 128, "score_thresh": 0.0},
    "tinyssd": {"image_size": 128},
    "ssdlite_mobilenet_v2": {"image_size": 128, "width_mult": 0.5},
    "yolo": {"image_size": 128, "score_thresh": 0.0},
}
NUM_CLASSES = 3  # two classes + background
# (H, W): different sizes and aspect ratios, larger than most models' inputs (smaller than ssdlite320's), so
# detections that were not mapped back to input coordinates would show.
IMAGE_SIZES = ((200, 160), (150, 230))


def tiny_images(seed: int = 0) -> list[torch.Tensor]:
    """Two float images in [0, 1] of different sizes."""
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, h, w, generator=g) for h, w in IMAGE_SIZES]


def tiny_targets(with_boxes: bool = True) -> list[dict[str, torch.Tensor]]:
    """Targets for `tiny_images`: one or two boxes (with masks) per image, or none at all."""
    targets = []
    for (h, w), boxes, labels in zip(
        IMAGE_SIZES,
        ([[20.0, 25.0, 100.0, 150.0]], [[10.0, 10.0, 70.0, 60.0], [120.0, 70.0, 210.0, 140.0]]),
        ([1], [2, 1]),
        strict=True,
    ):
        boxes_t = torch.tensor(boxes if with_boxes else [], dtype=torch.float32).reshape(-1, 4)
        masks = torch.zeros(len(boxes_t), h, w, dtype=torch.uint8)
        for mask, (x1, y1, x2, y2) in zip(masks, boxes_t.int().tolist(), strict=True):
            mask[y1:y2, x1:x2] = 1
        labels_t = torch.tensor(labels if with_boxes else [], dtype=torch.int64)
        targets.append({"boxes": boxes_t, "labels": labels_t, "masks": masks})
    return targets


@pytest.fixture
def one_thread():
    """One intra-op thread: on a small shared CPU this is several times faster than oversubscribing it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
