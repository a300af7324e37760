"""CocoEvaluator: collect per-image detections (on any rank), gather them on rank 0, compute COCO metrics."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

from dsdet.comm import gather_to_main, is_main_process
from dsdet.errors import DsdetError
from dsdet.eval.backends import BACKENDS, IOU_TYPES, evaluate_coco
from dsdet.eval.detections import to_coco_results
from dsdet.eval.ground_truth import category_map, validate_ground_truth
from dsdet.eval.metrics import METRIC_NAMES

MIN_MAX_DETECTIONS = 10  # COCO also reports recall at 1 and 10 detections per image


class CocoEvaluator:
    """COCO bbox or segm evaluation of detections against an in-memory COCO ground-truth dict."""

    def __init__(
        self,
        coco_gt: Mapping,
        label_to_category_id: Mapping[int, int],
        *,
        backend: str = "faster_coco_eval",
        iou_type: str = "bbox",
        max_detections: int = 100,
    ):
        if backend not in BACKENDS:
            raise DsdetError(f"evaluation backend {backend!r} is unknown; choose one of {sorted(BACKENDS)}")
        if iou_type not in IOU_TYPES:
            raise DsdetError(f"iou_type {iou_type!r} is unknown; choose one of {list(IOU_TYPES)}")
        if max_detections < MIN_MAX_DETECTIONS:
            raise DsdetError(f"max_detections must be at least {MIN_MAX_DETECTIONS}, got {max_detections}")
        validate_ground_truth(coco_gt, iou_type)
        self.backend = backend
        self.iou_type = iou_type
        self.max_detections = max_detections
        self._ground_truth = copy.deepcopy(dict(coco_gt))  # COCOeval writes into annotations
        self._label_to_category_id = category_map(label_to_category_id, coco_gt)
        self._image_sizes = {
            int(image["id"]): (image.get("height"), image.get("width")) for image in coco_gt["images"]
        }
        self._results_by_image: dict[int, list[dict]] = {}

    def update(self, predictions: Sequence[Mapping], image_ids: Sequence[int]) -> None:
        """Add one prediction (boxes XYXY in original image coordinates, scores, labels 1..K) per image."""
        if len(predictions) != len(image_ids):
            raise DsdetError(f"update got {len(predictions)} predictions for {len(image_ids)} image ids")
        for prediction, raw_image_id in zip(predictions, image_ids, strict=True):
            image_id = int(raw_image_id)
            if image_id not in self._image_sizes:
                raise DsdetError(f"prediction for image {image_id}: no such image id in the ground truth")
            if image_id in self._results_by_image:
                continue  # a padded repeat from a distributed sampler
            mask_size = self._image_sizes[image_id] if self.iou_type == "segm" else None
            self._results_by_image[image_id] = to_coco_results(
                prediction, image_id, self._label_to_category_id, mask_size
            )

    def synchronize(self) -> None:
        """Move every rank's results to rank 0, one copy per image id; other ranks are left empty."""
        merged: dict[int, list[dict]] = {}
        for shard in gather_to_main(self._results_by_image) or []:
            for image_id, results in shard.items():
                merged.setdefault(image_id, results)
        self._results_by_image = merged

    def compute(self) -> dict[str, float]:
        """COCO metrics (AP, AP50, ..., ARl; -1 where undefined) on rank 0; an empty dict elsewhere."""
        if not is_main_process():
            return {}
        if not self._results_by_image:
            return dict.fromkeys(METRIC_NAMES, 0.0)
        return evaluate_coco(
            self._ground_truth,
            self.results(),
            list(self._results_by_image),
            backend=self.backend,
            iou_type=self.iou_type,
            max_detections=self.max_detections,
        )

    def results(self) -> list[dict]:
        """COCO-style results (image_id, category_id, XYWH bbox, score[, segmentation]), ordered by image id."""
        return [
            result
            for image_id in sorted(self._results_by_image)
            for result in self._results_by_image[image_id]
        ]
