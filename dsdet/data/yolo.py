"""Read YOLO label files (`class cx cy w h`, normalised, one .txt per image) into image records."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dsdet.data.records import Annotation, ImageRecord, make_record, scan_image
from dsdet.data.report import LoadReport
from dsdet.errors import DsdetError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
NO_LABEL_FILE = "images without a label file kept as negatives"


def parse_label_line(line: str, where: str, num_classes: int) -> tuple[int, float, float, float, float]:
    """(class index, cx, cy, w, h) of one label line."""
    values = line.split()
    if len(values) != 5:
        raise DsdetError(f"{where}: expected 5 values 'class cx cy w h', got {len(values)}")
    try:
        index = int(values[0])
        cx, cy, w, h = (float(v) for v in values[1:])
    except ValueError:
        raise DsdetError(f"{where}: expected an integer class and 4 numbers, got '{line.strip()}'") from None
    if not 0 <= index < num_classes:
        raise DsdetError(f"{where}: class {index} is not in 0..{num_classes - 1} (classes: {num_classes})")
    return index, cx, cy, w, h


def read_labels(path: Path, num_classes: int) -> list[tuple[str, tuple[int, float, float, float, float]]]:
    """(where, parsed line) for every non-blank line of a label file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DsdetError(f"cannot read label file {path}: {exc}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            where = f"{path} line {number}"
            rows.append((where, parse_label_line(line, where, num_classes)))
    return rows


def read_yolo(
    images_dir: Path,
    labels_dir: Path,
    classes: Sequence[str] | None,
    report: LoadReport,
    *,
    skip_missing: bool,
) -> tuple[list[ImageRecord], list[str], dict[int, int]]:
    """(records, class names, label -> category id 1..K); class index i becomes label i + 1."""
    if classes is None:
        raise DsdetError("yolo format needs `classes`: the names of class 0, 1, ... in order")
    if not labels_dir.is_dir():
        raise DsdetError(f"YOLO labels folder not found: {labels_dir}")
    image_paths = sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    records, annotation_id = [], 0
    for image_id, path in enumerate(image_paths, start=1):
        size = scan_image(path, report, skip_missing)
        if size is None:
            continue
        height, width = size
        relative = path.relative_to(images_dir)
        label_file = labels_dir / relative.with_suffix(".txt")
        found = []
        if not label_file.exists():
            report.add(NO_LABEL_FILE, str(label_file))
        else:
            for where, (index, cx, cy, w, h) in read_labels(label_file, len(classes)):
                annotation_id += 1
                box = (
                    (cx - w / 2) * width,
                    (cy - h / 2) * height,
                    (cx + w / 2) * width,
                    (cy + h / 2) * height,
                )
                found.append(Annotation(box, index + 1, annotation_id, where))
        records.append(make_record(path, relative.as_posix(), image_id, size, found, report))
    return records, list(classes), {label: label for label in range(1, len(classes) + 1)}
