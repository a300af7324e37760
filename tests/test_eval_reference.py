"""Our COCO numbers equal a direct pycocotools COCOeval run, on random but seeded ground truth and detections."""

import contextlib
import io

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from dsdet.eval import METRIC_NAMES, CocoEvaluator

NUM_IMAGES = 20
IMAGE_SIZE = 256
CATEGORY_IDS = [11, 4, 25]  # labels 1, 2, 3
SIDES = [(6, 30), (34, 90), (100, 200)]  # small, medium and large objects


def random_case(seed):
    """COCO ground truth and per-image predictions: jittered hits, misses, false positives and a few crowds."""
    rng = np.random.default_rng(seed)
    images, annotations, predictions = [], [], []
    for image_id in range(1, NUM_IMAGES + 1):
        images.append({"id": image_id, "height": IMAGE_SIZE, "width": IMAGE_SIZE})
        boxes, scores, labels = [], [], []
        for _ in range(rng.integers(1, 6)):
            low, high = SIDES[rng.integers(len(SIDES))]
            w, h = rng.uniform(low, high, size=2)
            x, y = rng.uniform(0, IMAGE_SIZE - w), rng.uniform(0, IMAGE_SIZE - h)
            label = int(rng.integers(1, len(CATEGORY_IDS) + 1))
            crowd = int(rng.random() < 0.05)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": CATEGORY_IDS[label - 1],
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": crowd,
                }
            )
            if rng.random() < 0.8:  # detected, with a jitter of up to a tenth of the size
                dx, dy, dw, dh = rng.uniform(-0.1, 0.1, size=4) * [w, h, w, h]
                boxes.append([x + dx, y + dy, x + dx + w + dw, y + dy + h + dh])
                scores.append(rng.uniform(0.2, 1.0))
                labels.append(label if rng.random() < 0.9 else int(rng.integers(1, len(CATEGORY_IDS) + 1)))
        for _ in range(rng.integers(0, 4)):  # false positives
            x, y = rng.uniform(0, IMAGE_SIZE - 40, size=2)
            w, h = rng.uniform(4, 120, size=2)
            boxes.append([x, y, x + w, y + h])
            scores.append(rng.uniform(0.0, 0.7))
            labels.append(int(rng.integers(1, len(CATEGORY_IDS) + 1)))
        predictions.append(
            {
                "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                "scores": torch.tensor(scores, dtype=torch.float32),
                "labels": torch.tensor(labels, dtype=torch.int64),
            }
        )
    categories = [{"id": category_id, "name": f"c{category_id}"} for category_id in CATEGORY_IDS]
    return {"images": images, "annotations": annotations, "categories": categories}, predictions


def pycocotools_stats(gt, predictions):
    """The twelve numbers straight from pycocotools' COCOeval.summarize()."""
    detections = []
    for image_id, prediction in enumerate(predictions, start=1):
        for (x1, y1, x2, y2), score, label in zip(
            prediction["boxes"].tolist(),
            prediction["scores"].tolist(),
            prediction["labels"].tolist(),
            strict=True,
        ):
            detections.append(
                {
                    "image_id": image_id,
                    "category_id": CATEGORY_IDS[label - 1],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(detections), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return dict(zip(METRIC_NAMES, coco_eval.stats.tolist(), strict=True))


@pytest.mark.parametrize("seed", [0, 1])
def test_both_backends_equal_pycocotools(seed):
    gt, predictions = random_case(seed)
    label_to_category_id = dict(enumerate(CATEGORY_IDS, start=1))
    ours = {}
    for backend in ("faster_coco_eval", "pycocotools"):
        evaluator = CocoEvaluator(gt, label_to_category_id, backend=backend)
        for start in range(0, NUM_IMAGES, 4):  # batches of 4, as an eval loop would
            evaluator.update(predictions[start : start + 4], list(range(start + 1, start + 5)))
        evaluator.synchronize()
        ours[backend] = evaluator.compute()
    reference = pycocotools_stats(gt, predictions)
    assert all(reference[name] > 0 for name in METRIC_NAMES), reference  # every size and metric is exercised
    assert 0.2 < reference["AP"] < 0.9, reference  # neither trivial nor hopeless
    for backend, metrics in ours.items():
        assert metrics == pytest.approx(reference, abs=1e-6), backend
