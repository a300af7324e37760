"""Turn one image's model output (XYXY boxes, scores, contiguous labels, optional masks) into COCO results."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torchvision.ops import box_convert

from dsdet.errors import DsdetError

MASK_THRESHOLD = 0.5


def _field(prediction: Mapping, key: str, image_id: int, shape: tuple[int | None, ...]) -> torch.Tensor:
    """`prediction[key]` on the CPU, checked against `shape` (None matches any size)."""
    if key not in prediction:
        raise DsdetError(f"prediction for image {image_id} has no '{key}'")
    value = torch.as_tensor(prediction[key]).detach().cpu()
    if value.ndim != len(shape) or any(
        want not in (None, got) for want, got in zip(shape, value.shape, strict=True)
    ):
        expected = "x".join("N" if want is None else str(want) for want in shape)
        raise DsdetError(
            f"prediction for image {image_id}: '{key}' has shape {tuple(value.shape)}, expected {expected}"
        )
    return value


def _category_ids(labels: torch.Tensor, image_id: int, label_to_category_id: Mapping[int, int]) -> list[int]:
    """COCO category id of each contiguous label."""
    unknown = sorted(set(labels.tolist()) - set(label_to_category_id))
    if unknown:
        raise DsdetError(
            f"prediction for image {image_id} has label {unknown[0]}, which label_to_category_id does not map "
            f"(it maps {sorted(label_to_category_id)})"
        )
    return [label_to_category_id[label] for label in labels.tolist()]


def _encode_masks(prediction: Mapping, image_id: int, count: int, image_size: tuple[int, int]) -> list[dict]:
    """Compressed RLEs (str counts, JSON-ready) of N×1×H×W mask probabilities thresholded at 0.5."""
    masks = _field(prediction, "masks", image_id, (count, 1, *image_size))
    binary = (masks[:, 0] > MASK_THRESHOLD).numpy().astype(np.uint8)
    rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0)))
    return [{"size": rle["size"], "counts": rle["counts"].decode("ascii")} for rle in rles]


def to_coco_results(
    prediction: Mapping,
    image_id: int,
    label_to_category_id: Mapping[int, int],
    mask_size: tuple[int, int] | None = None,
) -> list[dict]:
    """COCO result dicts (image_id, category_id, XYWH bbox, score; segmentation RLE when `mask_size` is given)."""
    boxes = _field(prediction, "boxes", image_id, (None, 4)).float()
    count = len(boxes)
    scores = _field(prediction, "scores", image_id, (count,)).float().tolist()
    categories = _category_ids(
        _field(prediction, "labels", image_id, (count,)), image_id, label_to_category_id
    )
    xywh = box_convert(boxes, "xyxy", "xywh").tolist()
    results = [
        {"image_id": image_id, "category_id": category, "bbox": box, "score": score}
        for category, box, score in zip(categories, xywh, scores, strict=True)
    ]
    if mask_size is not None:
        for result, rle in zip(results, _encode_masks(prediction, image_id, count, mask_size), strict=True):
            result["segmentation"] = rle
    return results
