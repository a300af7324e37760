"""Mask (segm) evaluation on a tiny case: Mask R-CNN style N×1×H×W probabilities, thresholded at 0.5."""

import json

import numpy as np
import pytest
import torch
from faster_coco_eval.core import mask as mask_utils

from dsdet.errors import DsdetError
from dsdet.eval import CocoEvaluator

SIZE = 32


def square_mask():
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
    mask[5:15, 5:15] = 1  # 10 x 10 = 100 pixels
    return mask


def ground_truth():
    rle = mask_utils.encode(np.asfortranarray(square_mask()))
    annotation = {
        "id": 1,
        "image_id": 1,
        "category_id": 2,
        "bbox": [5.0, 5.0, 10.0, 10.0],
        "area": 100.0,
        "iscrowd": 0,
        "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
    }
    image = {"id": 1, "height": SIZE, "width": SIZE}
    return {"images": [image], "annotations": [annotation], "categories": [{"id": 2, "name": "thing"}]}


def prediction_covering(rows, cols):
    """A perfect box, and a mask just above 0.5 on rows x cols of the object, just below elsewhere."""
    probabilities = torch.full((1, 1, SIZE, SIZE), 0.49)
    probabilities[0, 0, rows, cols] = 0.51
    return {
        "boxes": torch.tensor([[5.0, 5.0, 15.0, 15.0]]),
        "scores": torch.tensor([0.9]),
        "labels": torch.tensor([1]),
        "masks": probabilities,
    }


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
def test_mask_iou_decides_segm_metrics(backend):
    # The mask covers 8 x 9 = 72 of the 100 object pixels: IoU 0.72 passes the IoU thresholds 0.50..0.70
    # (5 of 10), so segm AP is 0.5, AP50 1 and AP75 0, while the perfect box gives bbox AP 1.
    predictions = [prediction_covering(slice(5, 13), slice(5, 14))]
    segm = CocoEvaluator(ground_truth(), {1: 2}, backend=backend, iou_type="segm")
    segm.update(predictions, [1])
    metrics = segm.compute()
    assert metrics["AP"] == pytest.approx(0.5)
    assert (metrics["AP50"], metrics["AP75"]) == (pytest.approx(1.0), 0.0)
    bbox = CocoEvaluator(ground_truth(), {1: 2}, backend=backend, iou_type="bbox")
    bbox.update(predictions, [1])
    assert bbox.compute()["AP"] == pytest.approx(1.0)


def test_segm_results_are_json_ready_rles_of_the_thresholded_mask():
    evaluator = CocoEvaluator(ground_truth(), {1: 2}, iou_type="segm")
    evaluator.update([prediction_covering(slice(5, 15), slice(5, 15))], [1])
    (result,) = json.loads(json.dumps(evaluator.results()))
    assert np.array_equal(mask_utils.decode(result["segmentation"]), square_mask())
    assert result["bbox"] == pytest.approx([5.0, 5.0, 10.0, 10.0])
    assert evaluator.compute()["AP"] == pytest.approx(1.0)


def test_mask_of_the_wrong_size_is_a_clear_error():
    evaluator = CocoEvaluator(ground_truth(), {1: 2}, iou_type="segm")
    prediction = prediction_covering(slice(5, 15), slice(5, 15)) | {"masks": torch.zeros(1, 1, 16, 16)}
    with pytest.raises(DsdetError, match=r"image 1: 'masks' has shape \(1, 1, 16, 16\), expected 1x1x32x32"):
        evaluator.update([prediction], [1])


def test_segm_without_masks_is_a_clear_error():
    evaluator = CocoEvaluator(ground_truth(), {1: 2}, iou_type="segm")
    prediction = {k: v for k, v in prediction_covering(slice(5, 15), slice(5, 15)).items() if k != "masks"}
    with pytest.raises(DsdetError, match="prediction for image 1 has no 'masks'"):
        evaluator.update([prediction], [1])
