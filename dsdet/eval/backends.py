"""Run COCOeval (faster-coco-eval or pycocotools) without its printing, and return the COCO metrics."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence

import faster_coco_eval
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from dsdet.eval.metrics import summarize

BACKENDS = {
    "faster_coco_eval": (faster_coco_eval.COCO, faster_coco_eval.COCOeval_faster),
    "pycocotools": (COCO, COCOeval),
}
IOU_TYPES = ("bbox", "segm")


def _indexed(coco_class: type, dataset: Mapping) -> object:
    """A COCO API object over an in-memory COCO dict."""
    coco = coco_class()
    coco.dataset = dict(dataset)
    coco.createIndex()
    return coco


def _detections(coco_class: type, ground_truth: object, results: Sequence[Mapping], iou_type: str) -> object:
    """The results as a COCO API object; segm results drop `bbox` so their area is the mask's."""
    if not results:
        empty = {key: ground_truth.dataset[key] for key in ("images", "categories")}
        return _indexed(coco_class, {**empty, "annotations": []})
    dropped = {"bbox"} if iou_type == "segm" else set()
    return ground_truth.loadRes([{k: v for k, v in result.items() if k not in dropped} for result in results])


def evaluate_coco(
    coco_gt: Mapping,
    results: Sequence[Mapping],
    image_ids: Sequence[int],
    *,
    backend: str,
    iou_type: str,
    max_detections: int,
) -> dict[str, float]:
    """COCO metrics of `results` on the images `image_ids` of `coco_gt` (which must be non-empty)."""
    coco_class, eval_class = BACKENDS[backend]
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = _indexed(coco_class, coco_gt)
        coco_eval = eval_class(
            ground_truth, _detections(coco_class, ground_truth, results, iou_type), iou_type
        )
        coco_eval.params.imgIds = sorted(image_ids)
        coco_eval.params.maxDets = [1, 10, max_detections]
        coco_eval.evaluate()
        coco_eval.accumulate()
    return summarize(coco_eval.eval["precision"], coco_eval.eval["recall"], coco_eval.params.iouThrs)
