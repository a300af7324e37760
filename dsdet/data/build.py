"""`build_dataset`: one entry point for the coco, voc and yolo readers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dsdet.data.coco import read_coco
from dsdet.data.dataset import DetectionDataset
from dsdet.data.report import LoadReport
from dsdet.data.voc import read_voc
from dsdet.data.yolo import read_yolo
from dsdet.errors import DsdetError

FORMATS = ("coco", "voc", "yolo")


def _resolve(root: Path, path: str | Path) -> Path:
    """`path` relative to `root` unless absolute."""
    return root / Path(path).expanduser()


def build_dataset(
    format: str,
    root: str | Path,
    images: str | Path,
    annotations: str | Path | None,
    classes: Sequence[str] | None = None,
    transforms: Callable[..., Any] | None = None,
    *,
    with_masks: bool = False,
    skip_missing: bool = False,
) -> DetectionDataset:
    """Read and validate a coco | voc | yolo dataset (paths relative to `root` unless absolute)."""
    if format not in FORMATS:
        raise DsdetError(f"unknown dataset format '{format}': expected one of {', '.join(FORMATS)}")
    if classes is not None and len(set(classes)) != len(classes):
        raise DsdetError(f"classes repeat a name: {list(classes)}")
    if with_masks and format != "coco":
        raise DsdetError(f"{format} annotations have no masks: with_masks needs the coco format")
    root = Path(root).expanduser()
    images_dir = _resolve(root, images)
    if not images_dir.is_dir():
        raise DsdetError(f"image folder not found: {images_dir}")
    annotation_path = None if annotations is None else _resolve(root, annotations)
    report = LoadReport(str(annotation_path or root))
    if format == "coco":
        if annotation_path is None:
            raise DsdetError("coco format needs `annotations`: the annotation JSON file")
        records, names, label_map = read_coco(
            images_dir, annotation_path, classes, report, with_masks=with_masks, skip_missing=skip_missing
        )
    elif format == "voc":
        records, names, label_map = read_voc(
            root, images_dir, annotation_path, classes, report, skip_missing=skip_missing
        )
    else:
        if annotation_path is None:
            raise DsdetError("yolo format needs `annotations`: the labels folder")
        records, names, label_map = read_yolo(
            images_dir, annotation_path, classes, report, skip_missing=skip_missing
        )
    if not records:
        raise DsdetError(
            f"no images found for {format} dataset: images {images_dir}, annotations {annotation_path}"
        )
    if not names:
        raise DsdetError(f"{annotation_path or root}: the dataset has no classes")
    report.log()
    return DetectionDataset(records, names, label_map, transforms, report.lines())
