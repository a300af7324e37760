"""The reader-independent form of a dataset: per image its file, size and cleaned boxes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dsdet.data.images import ImageFileError, image_size
from dsdet.data.report import LoadReport

DEGENERATE = "degenerate boxes (zero or negative size inside the image) dropped"
CLIPPED = "boxes reaching outside the image clipped"
# Coordinates this far outside the image are rounding, not a mistake worth a warning.
CLIP_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Annotation:
    """One box as a reader found it: XYXY pixels, a contiguous label and where it came from."""

    box: tuple[float, float, float, float]
    label: int
    annotation_id: int
    where: str
    iscrowd: int = 0
    area: float | None = None
    segmentation: Any = None


@dataclass(frozen=True)
class ImageRecord:
    """One image: its file, size and cleaned annotations (arrays of equal length N)."""

    path: Path
    file_name: str
    image_id: int
    height: int
    width: int
    boxes: np.ndarray
    labels: np.ndarray
    areas: np.ndarray
    iscrowd: np.ndarray
    annotation_ids: np.ndarray
    segmentations: tuple | None


def scan_image(path: Path, report: LoadReport, skip_missing: bool) -> tuple[int, int] | None:
    """(height, width) of `path`; None (counted in `report`) for a missing or unreadable file when skipping."""
    try:
        return image_size(path)
    except ImageFileError as exc:
        if not skip_missing:
            raise
        report.add(f"{exc.kind} image files skipped", str(path))
        return None


def clip_box(annotation: Annotation, height: int, width: int, report: LoadReport) -> Annotation | None:
    """The annotation with its box clipped to the image, or None (counted) when nothing of it is left."""
    x1, y1, x2, y2 = annotation.box
    clipped = (
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
        min(max(x2, 0.0), width),
        min(max(y2, 0.0), height),
    )
    if not (clipped[2] > clipped[0] and clipped[3] > clipped[1]):
        report.add(DEGENERATE, annotation.where)
        return None
    if max(abs(a - b) for a, b in zip(clipped, annotation.box, strict=True)) > CLIP_TOLERANCE:
        report.add(CLIPPED, annotation.where)
    return replace(annotation, box=clipped)


def make_record(
    path: Path,
    file_name: str,
    image_id: int,
    size: tuple[int, int],
    annotations: Sequence[Annotation],
    report: LoadReport,
    with_masks: bool = False,
) -> ImageRecord:
    """Clip and drop boxes (counting both in `report`) and pack the rest into an ImageRecord."""
    height, width = size
    kept = [a for a in (clip_box(a, height, width, report) for a in annotations) if a is not None]
    boxes = np.array([a.box for a in kept], dtype=np.float32).reshape(-1, 4)
    box_areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    areas = np.array(
        [box_area if a.area is None else a.area for a, box_area in zip(kept, box_areas, strict=True)],
        dtype=np.float32,
    )
    return ImageRecord(
        path=path,
        file_name=file_name,
        image_id=image_id,
        height=height,
        width=width,
        boxes=boxes,
        labels=np.array([a.label for a in kept], dtype=np.int64),
        areas=areas,
        iscrowd=np.array([a.iscrowd for a in kept], dtype=np.int64),
        annotation_ids=np.array([a.annotation_id for a in kept], dtype=np.int64),
        segmentations=tuple(a.segmentation for a in kept) if with_masks else None,
    )
