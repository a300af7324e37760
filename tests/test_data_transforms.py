"""`build_transforms`: boxes match hand-computed ones, and images, boxes and masks move together."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors

from dsdet.data import build_transforms
from dsdet.errors import DsdetError

H, W = 40, 60
BOXES = [[10.0, 10.0, 30.0, 20.0], [40.0, 4.0, 58.0, 36.0], [0.0, 30.0, 2.0, 32.0]]


def sample(boxes=BOXES):
    """A black image with each box painted white, and a target whose masks are the same rectangles."""
    image = torch.zeros(3, H, W)
    masks = torch.zeros(len(boxes), H, W, dtype=torch.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        image[:, int(y1) : int(y2), int(x1) : int(x2)] = 1.0
        masks[k, int(y1) : int(y2), int(x1) : int(x2)] = 1
    target = {
        "boxes": tv_tensors.BoundingBoxes(
            torch.tensor(boxes).reshape(-1, 4), format="XYXY", canvas_size=(H, W)
        ),
        "labels": torch.arange(1, len(boxes) + 1),
        "image_id": 7,
        "area": torch.tensor([(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in boxes]),
        "iscrowd": torch.tensor([0, 1, 0][: len(boxes)]),
        "masks": tv_tensors.Mask(masks),
    }
    return tv_tensors.Image(image), target


def run(augment, train=True, boxes=BOXES):
    return build_transforms(augment, train)(*sample(boxes))


@pytest.mark.parametrize(
    ("augment", "size", "expected"),
    [
        ([{"name": "hflip", "p": 1.0}], (H, W), [[30, 10, 50, 20], [2, 4, 20, 36], [58, 30, 60, 32]]),
        ([{"name": "vflip", "p": 1.0}], (H, W), [[10, 20, 30, 30], [40, 4, 58, 36], [0, 8, 2, 10]]),
        ([{"name": "resize", "size": 80}], (80, 120), [[20, 20, 60, 40], [80, 8, 116, 72], [0, 60, 4, 64]]),
        (
            [{"name": "resize", "size": 80, "max_size": 90}],
            (60, 90),
            [[15, 15, 45, 30], [60, 6, 87, 54], [0, 45, 3, 48]],
        ),
        # 90 degrees counter-clockwise on an expanded canvas: (x, y) -> (y, W - x)
        (
            [{"name": "rotation", "degrees": [90, 90]}],
            (W, H),
            [[10, 30, 20, 50], [4, 2, 36, 20], [30, 58, 32, 60]],
        ),
        (
            [{"name": "scale_jitter", "target_size": [80, 120], "scale_range": [1.0, 1.0]}],
            (80, 120),
            [[20, 20, 60, 40], [80, 8, 116, 72], [0, 60, 4, 64]],
        ),
    ],
)
def test_boxes_follow_by_hand(augment, size, expected):
    image, target = run(augment)
    assert tuple(image.shape[-2:]) == size and target["boxes"].canvas_size == size
    torch.testing.assert_close(
        target["boxes"].as_subclass(torch.Tensor),
        torch.tensor(expected, dtype=torch.float32),
        atol=0.51,
        rtol=0,
    )
    assert target["labels"].tolist() == [1, 2, 3] and target["image_id"] == 7


def extent(region: torch.Tensor) -> list[int]:
    """XYXY pixel edges of the non-zero part of a 2-D tensor."""
    ys, xs = torch.nonzero(region, as_tuple=True)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


@pytest.mark.parametrize("seed", range(6))
def test_image_boxes_and_masks_stay_together(seed):
    torch.manual_seed(seed)
    augment = [
        {"name": "zoom_out", "p": 0.5, "side_range": [1.0, 2.0]},
        {"name": "ssd_crop"},
        {"name": "scale_jitter", "target_size": [40, 60], "scale_range": [0.8, 1.5]},
        {"name": "hflip"},
        {"name": "vflip"},
        {"name": "brightness"},
        {"name": "contrast"},
    ]
    image, target = run(augment, boxes=BOXES[:2])
    boxes, masks = target["boxes"], target["masks"]
    assert tuple(image.shape[-2:]) == boxes.canvas_size == tuple(masks.shape[-2:])
    assert (
        len(boxes)
        == len(masks)
        == len(target["labels"])
        == len(target["iscrowd"])
        == len(target["area"])
        >= 1
    )
    gray, background = image.mean(0), masks.sum(0) == 0
    for box, mask in zip(boxes.tolist(), masks, strict=True):
        assert extent(mask) == pytest.approx(box, abs=1.5)
        assert gray[mask.bool()].mean() > gray[background].mean() + 0.3  # the painted box moved with its mask


def test_rotation_keeps_masks_inside_boxes():
    torch.manual_seed(0)
    image, target = run([{"name": "rotation", "degrees": 30.0}])
    for box, mask in zip(target["boxes"].tolist(), target["masks"], strict=True):
        x1, y1, x2, y2 = extent(mask)
        assert box[0] - 1 <= x1 and box[1] - 1 <= y1 and x2 <= box[2] + 1 and y2 <= box[3] + 1


def test_eval_pipeline_only_resizes():
    augment = [
        {"name": "hflip", "p": 1.0},
        {"name": "rotation", "degrees": 45},
        {"name": "resize", "size": 80},
    ]
    _, target = run(augment, train=False)
    assert target["boxes"].tolist()[0] == [20.0, 20.0, 60.0, 40.0]
    assert len(build_transforms(augment, train=False).transforms) == 3  # resize, clamp, sanitize


def test_sanitize_drops_tiny_boxes_with_their_fields():
    _, target = run([{"name": "resize", "size": 4}])  # scale 0.1: the 2x2 box becomes 0.2 px
    assert target["labels"].tolist() == [1, 2] and target["iscrowd"].tolist() == [0, 1]
    assert len(target["area"]) == len(target["masks"]) == 2


def test_empty_targets_pass_through_every_augmentation():
    augment = [{"name": n} for n in ("hflip", "vflip", "rotation", "photometric", "zoom_out", "ssd_crop")]
    for _ in range(3):
        image, target = run(augment, boxes=[])
        assert image.ndim == 3 and target["boxes"].shape == (0, 4) and target["masks"].shape[0] == 0


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"name": "mosaic"}, "augment[0]: unknown augmentation 'mosaic'; known: hflip, vflip, brightness"),
        ({"name": "hflip", "prob": 0.3}, "augment[0] (hflip): unknown parameters ['prob']; known: ['p']"),
        ({"name": "resize"}, "augment[0] (resize): missing parameters ['size']"),
        ({"name": "hflip", "p": 2}, "augment[0] (hflip): "),
        (
            {"name": "zoom_out", "fill": 123},
            "augment[0] (zoom_out): fill 123 must be in [0, 1] (images are float in [0, 1])",
        ),
    ],
)
def test_bad_augment_items(item, expected):
    with pytest.raises(DsdetError) as excinfo:
        build_transforms([item], train=True)
    assert str(excinfo.value).startswith(expected) and "\n" not in str(excinfo.value)
