"""Check a COCO ground-truth dict and a label map before evaluating against them."""

from __future__ import annotations

from collections.abc import Mapping

from dsdet.errors import DsdetError

_IMAGE_KEYS = {"bbox": ("id",), "segm": ("id", "height", "width")}
_ANNOTATION_KEYS = {
    "bbox": ("id", "image_id", "category_id", "bbox", "area", "iscrowd"),
    "segm": ("id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation"),
}


def _require(entry: object, keys: tuple[str, ...], what: str) -> None:
    """Raise naming `what` and the first of `keys` that `entry` lacks."""
    if not isinstance(entry, Mapping):
        raise DsdetError(f"coco ground truth: {what} is not a mapping")
    for key in keys:
        if key not in entry:
            raise DsdetError(f"coco ground truth: {what} has no '{key}'")


def validate_ground_truth(coco_gt: Mapping, iou_type: str) -> None:
    """Raise DsdetError naming the first missing section, image field or annotation field."""
    if not isinstance(coco_gt, Mapping):
        raise DsdetError("coco ground truth must be a dict with 'images', 'annotations' and 'categories'")
    for section in ("images", "annotations", "categories"):
        if not isinstance(coco_gt.get(section), list):
            raise DsdetError(f"coco ground truth: '{section}' must be a list")
    for index, image in enumerate(coco_gt["images"]):
        _require(image, _IMAGE_KEYS[iou_type], f"images[{index}]")
    for index, annotation in enumerate(coco_gt["annotations"]):
        named = isinstance(annotation, Mapping) and "id" in annotation
        _require(
            annotation,
            _ANNOTATION_KEYS[iou_type],
            f"annotation {annotation['id']}" if named else f"annotations[{index}]",
        )
    for index, category in enumerate(coco_gt["categories"]):
        _require(category, ("id",), f"categories[{index}]")


def category_map(label_to_category_id: Mapping, coco_gt: Mapping) -> dict[int, int]:
    """`label_to_category_id` with int keys and values (JSON gives str keys), every id a ground-truth category."""
    known = {int(category["id"]) for category in coco_gt["categories"]}
    mapping = {int(label): int(category_id) for label, category_id in label_to_category_id.items()}
    for label, category_id in mapping.items():
        if category_id not in known:
            raise DsdetError(
                f"label_to_category_id: label {label} maps to category {category_id}, not in the ground truth"
            )
    return mapping
