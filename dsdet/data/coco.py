"""Read a COCO annotation file (boxes, crowd flags, optional polygon/RLE masks) into image records."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dsdet.data.masks import check_segmentation
from dsdet.data.records import Annotation, ImageRecord, make_record, scan_image
from dsdet.data.report import LoadReport
from dsdet.errors import DsdetError

UNSELECTED = "annotations of categories not in `classes` ignored"


def load_json(path: Path) -> Any:
    """Parse `path`, naming the file and line of a syntax error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DsdetError(f"annotation file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DsdetError(f"cannot read annotation file {path}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DsdetError(f"{path} line {exc.lineno} column {exc.colno}: malformed JSON: {exc.msg}") from None


def _field(entry: Any, key: str, kinds: type | tuple[type, ...], where: str) -> Any:
    """entry[key], checked to be of `kinds` (bool is never a number here)."""
    if not isinstance(entry, dict) or key not in entry:
        raise DsdetError(f"{where} has no '{key}'")
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise DsdetError(f"{where}: '{key}' must be {getattr(kinds, '__name__', 'a number')}, got {value!r}")
    return value


def _section(coco: Any, key: str, path: Path, required: bool = True) -> list:
    """A top-level list of the COCO file."""
    if not isinstance(coco, dict):
        raise DsdetError(f"{path}: expected a JSON object with 'images', 'annotations' and 'categories'")
    if key not in coco and not required:
        return []
    value = coco.get(key)
    if not isinstance(value, list):
        raise DsdetError(f"{path}: '{key}' must be a list")
    return value


def _categories(coco: Any, path: Path, classes: Sequence[str] | None) -> tuple[list[str], dict[int, int]]:
    """(class names, category id -> label) for all categories by id, or for `classes` in that order."""
    names: dict[int, str] = {}
    for index, category in enumerate(_section(coco, "categories", path)):
        where = f"{path}: categories[{index}]"
        category_id = _field(category, "id", int, where)
        if category_id in names:
            raise DsdetError(f"{path}: category id {category_id} appears twice")
        names[category_id] = str(_field(category, "name", str, where))
    if classes is None:
        ordered = sorted(names)
    else:
        by_name = {name: category_id for category_id, name in names.items()}
        missing = [name for name in classes if name not in by_name]
        if missing:
            raise DsdetError(f"{path}: classes {missing} are not among the categories {sorted(by_name)}")
        ordered = [by_name[name] for name in classes]
    return [names[c] for c in ordered], {
        category_id: label for label, category_id in enumerate(ordered, start=1)
    }


def _annotation(
    entry: Any, index: int, path: Path, labels: dict[int, int], known: set[int]
) -> tuple[int, Annotation | None]:
    """(image id, Annotation) of one entry; None for a known category that `classes` left out."""
    where = f"{path}: annotations[{index}]"
    annotation_id = _field(entry, "id", int, where)
    where = f"{path}: annotation id {annotation_id}"
    image_id = _field(entry, "image_id", int, where)
    category_id = _field(entry, "category_id", int, where)
    if category_id not in known:
        raise DsdetError(f"{where} has category_id {category_id}, which is not in 'categories'")
    bbox = _field(entry, "bbox", list, where)
    if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
        raise DsdetError(f"{where}: 'bbox' must be [x, y, width, height], got {bbox!r}")
    if category_id not in labels:
        return image_id, None
    x, y, w, h = (float(v) for v in bbox)
    area = _field(entry, "area", (int, float), where) if "area" in entry else None
    iscrowd = _field(entry, "iscrowd", int, where) if "iscrowd" in entry else 0
    annotation = Annotation(
        (x, y, x + w, y + h),
        labels[category_id],
        annotation_id,
        where,
        iscrowd,
        area,
        entry.get("segmentation"),
    )
    return image_id, annotation


def read_coco(
    images_dir: Path,
    annotation_file: Path,
    classes: Sequence[str] | None,
    report: LoadReport,
    *,
    with_masks: bool,
    skip_missing: bool,
) -> tuple[list[ImageRecord], list[str], dict[int, int]]:
    """(records, class names, label -> category id) of a COCO annotation file."""
    coco = load_json(annotation_file)
    class_names, labels = _categories(coco, annotation_file, classes)
    known = {c["id"] for c in coco["categories"]}
    images: dict[int, dict] = {}
    for index, image in enumerate(_section(coco, "images", annotation_file)):
        image_id = _field(image, "id", int, f"{annotation_file}: images[{index}]")
        if image_id in images:
            raise DsdetError(f"{annotation_file}: image id {image_id} appears twice")
        _field(image, "file_name", str, f"{annotation_file}: image id {image_id}")
        images[image_id] = image
    per_image: dict[int, list[Annotation]] = {image_id: [] for image_id in images}
    for index, entry in enumerate(_section(coco, "annotations", annotation_file, required=False)):
        image_id, annotation = _annotation(entry, index, annotation_file, labels, known)
        if image_id not in images:
            raise DsdetError(
                f"{annotation_file}: annotation id {entry['id']} refers to image id {image_id}, which is not in 'images'"
            )
        if annotation is None:
            report.add(UNSELECTED, f"{annotation_file}: annotation id {entry['id']}")
        else:
            per_image[image_id].append(annotation)
    records = []
    for image_id, image in images.items():
        path = images_dir / image["file_name"]
        size = scan_image(path, report, skip_missing)
        if size is None:
            continue
        _check_size(image, size, annotation_file, path)
        if with_masks:
            for annotation in per_image[image_id]:
                check_segmentation(annotation.segmentation, *size, annotation.where)
        records.append(
            make_record(path, image["file_name"], image_id, size, per_image[image_id], report, with_masks)
        )
    return records, class_names, {label: category_id for category_id, label in labels.items()}


def _check_size(image: dict, size: tuple[int, int], annotation_file: Path, path: Path) -> None:
    """Raise when the file's size disagrees with the width/height the annotation file states."""
    stated = (image.get("height"), image.get("width"))
    if None not in stated and tuple(stated) != size:
        raise DsdetError(
            f"{annotation_file}: image id {image['id']} says {stated[1]}x{stated[0]} (WxH), "
            f"but {path} is {size[1]}x{size[0]}"
        )
