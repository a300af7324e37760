"""COCO segmentations (polygons, RLE) checked at load time and decoded to instance masks with pycocotools."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

from dsdet.errors import DsdetError


def check_segmentation(segmentation: Any, height: int, width: int, where: str) -> None:
    """Raise DsdetError naming `where` unless `segmentation` is a polygon list or an RLE dict of the image's size."""
    if isinstance(segmentation, dict):
        if not {"counts", "size"} <= segmentation.keys():
            raise DsdetError(f"{where}: RLE segmentation needs 'counts' and 'size'")
        if list(segmentation["size"]) != [height, width]:
            raise DsdetError(
                f"{where}: RLE size {segmentation['size']} is not the image's [{height}, {width}]"
            )
        return
    polygons_ok = (
        isinstance(segmentation, list)
        and segmentation
        and all(
            isinstance(p, list)
            and len(p) >= 6
            and len(p) % 2 == 0
            and all(isinstance(v, (int, float)) for v in p)
            for p in segmentation
        )
    )
    if not polygons_ok:
        raise DsdetError(
            f"{where}: segmentation must be polygons [[x1, y1, x2, y2, x3, y3, ...], ...] or an RLE dict"
        )


def decode_masks(segmentations: Sequence[Any], height: int, width: int) -> np.ndarray:
    """Instance masks (N x H x W, uint8 0/1) from COCO polygons or RLE."""
    masks = np.zeros((len(segmentations), height, width), dtype=np.uint8)
    for index, segmentation in enumerate(segmentations):
        if isinstance(segmentation, dict) and isinstance(segmentation["counts"], list):
            rle = coco_mask.frPyObjects(segmentation, height, width)
        elif isinstance(segmentation, dict):
            rle = segmentation
        else:
            rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
        masks[index] = coco_mask.decode(rle)
    return masks
