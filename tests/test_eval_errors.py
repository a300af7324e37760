"""Bad ground truth, options or predictions raise a one-line DsdetError that names the culprit."""

import pytest
import torch

from dsdet.errors import DsdetError
from dsdet.eval import CocoEvaluator

GT = {
    "images": [{"id": 1, "height": 50, "width": 50}],
    "annotations": [
        {"id": 9, "image_id": 1, "category_id": 4, "bbox": [1, 1, 10, 10], "area": 100.0, "iscrowd": 0}
    ],
    "categories": [{"id": 4, "name": "thing"}],
}
GOOD = {
    "boxes": torch.tensor([[1.0, 1.0, 11.0, 11.0]]),
    "scores": torch.tensor([0.9]),
    "labels": torch.tensor([1]),
}


def message(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"backend": "detectron"}, "evaluation backend 'detectron' is unknown"),
        ({"iou_type": "keypoints"}, "iou_type 'keypoints' is unknown"),
        ({"max_detections": 5}, "max_detections must be at least 10, got 5"),
    ],
)
def test_bad_options(kwargs, expected):
    with pytest.raises(DsdetError) as excinfo:
        CocoEvaluator(GT, {1: 4}, **kwargs)
    assert expected in message(excinfo)


@pytest.mark.parametrize(
    ("gt", "iou_type", "expected"),
    [
        ({k: v for k, v in GT.items() if k != "categories"}, "bbox", "'categories' must be a list"),
        (GT | {"annotations": [{"id": 9}]}, "bbox", "annotation 9 has no 'image_id'"),
        (GT | {"annotations": [{"bbox": [0, 0, 1, 1]}]}, "bbox", "annotations[0] has no 'id'"),
        (GT, "segm", "annotation 9 has no 'segmentation'"),
        (GT | {"images": [{"id": 1}]}, "segm", "images[0] has no 'height'"),
    ],
)
def test_bad_ground_truth(gt, iou_type, expected):
    with pytest.raises(DsdetError) as excinfo:
        CocoEvaluator(gt, {1: 4}, iou_type=iou_type)
    assert expected in message(excinfo)


def test_label_map_to_unknown_category():
    with pytest.raises(DsdetError) as excinfo:
        CocoEvaluator(GT, {1: 4, 2: 77})
    assert "label 2 maps to category 77, not in the ground truth" in message(excinfo)


@pytest.mark.parametrize(
    ("predictions", "image_ids", "expected"),
    [
        ([GOOD], [1, 1], "update got 1 predictions for 2 image ids"),
        ([GOOD], [2], "prediction for image 2: no such image id in the ground truth"),
        (
            [GOOD | {"labels": torch.tensor([3])}],
            [1],
            "prediction for image 1 has label 3, which label_to_category_id does not map",
        ),
        ([{k: v for k, v in GOOD.items() if k != "scores"}], [1], "prediction for image 1 has no 'scores'"),
        (
            [GOOD | {"boxes": torch.zeros(1, 5)}],
            [1],
            "prediction for image 1: 'boxes' has shape (1, 5), expected Nx4",
        ),
        (
            [GOOD | {"scores": torch.zeros(2)}],
            [1],
            "prediction for image 1: 'scores' has shape (2,), expected 1",
        ),
    ],
)
def test_bad_predictions(predictions, image_ids, expected):
    evaluator = CocoEvaluator(GT, {1: 4})
    with pytest.raises(DsdetError) as excinfo:
        evaluator.update(predictions, image_ids)
    assert expected in message(excinfo)
