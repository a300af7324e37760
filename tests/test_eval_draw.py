"""draw_detections: uint8 CHW, ground truth and predictions drawn where their boxes are, captions offline."""

import pytest
import torch
from torchvision import tv_tensors

from dsdet.errors import DsdetError
from dsdet.eval import draw_detections
from dsdet.eval.draw import GROUND_TRUTH_COLOUR, PREDICTION_COLOUR

NAMES = ["cat", "dog"]
H, W = 48, 64


def grey_image():
    return tv_tensors.Image(torch.full((3, H, W), 0.5))


def changed(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """H×W mask of pixels whose colour changed."""
    return (before != after).any(dim=0)


def test_ground_truth_and_prediction_are_drawn_at_their_boxes():
    image = grey_image()
    target = {
        "boxes": tv_tensors.BoundingBoxes([[4, 20, 20, 40]], format="XYXY", canvas_size=(H, W)),
        "labels": torch.tensor([1]),
    }
    prediction = {
        "boxes": torch.tensor([[36.0, 20.0, 60.0, 44.0], [30.0, 2.0, 40.0, 8.0]]),
        "scores": torch.tensor([0.9, 0.1]),  # the second is below the threshold
        "labels": torch.tensor([2, 1]),
    }
    drawn = draw_detections(image, prediction, target, NAMES)
    assert drawn.dtype == torch.uint8 and drawn.shape == (3, H, W)
    assert type(drawn) is torch.Tensor
    diff = changed(draw_detections(image, None, None, NAMES), drawn)
    assert diff[40, 10] and diff[30, 4]  # ground truth outline: bottom and left edges
    assert diff[44, 48] and diff[30, 60]  # prediction outline: bottom and right edges
    assert not diff[46:, :].any() and not diff[:, :2].any()  # nothing outside the boxes and captions
    assert not diff[2:9, 30:41].any()  # the low-score prediction is left out
    green, red = torch.tensor([0, 255, 0], dtype=torch.uint8), torch.tensor([255, 0, 0], dtype=torch.uint8)
    assert (GROUND_TRUTH_COLOUR, PREDICTION_COLOUR) == ("lime", "red")
    assert torch.equal(drawn[:, 40, 10], green) and torch.equal(drawn[:, 44, 48], red)


def test_nothing_to_draw_returns_the_image_as_uint8():
    image = torch.rand(3, H, W)
    empty = {
        "boxes": torch.zeros(0, 4),
        "scores": torch.zeros(0),
        "labels": torch.zeros(0, dtype=torch.int64),
    }
    drawn = draw_detections(image, empty, None, NAMES)
    assert drawn.dtype == torch.uint8 and drawn.shape == (3, H, W)
    assert (drawn.float() - image * 255).abs().max() <= 1
    assert torch.equal(draw_detections(image, None, None, NAMES), drawn)


def test_label_without_a_name_is_a_clear_error():
    target = {"boxes": torch.tensor([[1.0, 1.0, 5.0, 5.0]]), "labels": torch.tensor([3])}
    with pytest.raises(DsdetError, match=r"label 3 has no name: class_names names labels 1\.\.2"):
        draw_detections(grey_image(), None, target, NAMES)
