"""Read Pascal VOC XML annotations (one file per image) into image records."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dsdet.data.records import Annotation, ImageRecord, make_record, scan_image
from dsdet.data.report import LoadReport
from dsdet.data.yolo import IMAGE_SUFFIXES
from dsdet.errors import DsdetError

STALE_FILENAME = "XML files naming a missing <filename> read the image of the same stem"


@dataclass(frozen=True)
class VocObject:
    """One <object> of an XML file: class name, 1-based inclusive pixel box, difficult flag."""

    name: str
    box: tuple[float, float, float, float]
    difficult: int
    where: str


def xml_files(root: Path, annotations: Path | None) -> list[Path]:
    """The XML files: all of <root>/Annotations (None), all of a folder, or the ids of an ImageSets list file."""
    if annotations is None or annotations.is_dir():
        folder = annotations or root / "Annotations"
        if not folder.is_dir():
            raise DsdetError(f"VOC annotation folder not found: {folder}")
        return sorted(folder.glob("*.xml"))
    try:
        lines = annotations.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DsdetError(f"VOC image set file not found: {annotations}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DsdetError(f"cannot read VOC image set file {annotations}: {exc}") from None
    return [root / "Annotations" / f"{line.split()[0]}.xml" for line in lines if line.strip()]


def _text(element: ET.Element, tag: str, where: str) -> str:
    """The stripped text of child `tag`."""
    child = element.find(tag)
    if child is None or not (child.text or "").strip():
        raise DsdetError(f"{where} has no <{tag}>")
    return child.text.strip()


def _number(element: ET.Element, tag: str, where: str) -> float:
    """The numeric text of child `tag`."""
    text = _text(element, tag, where)
    try:
        return float(text)
    except ValueError:
        raise DsdetError(f"{where}: <{tag}> '{text}' is not a number") from None


def parse_xml(path: Path) -> tuple[str, list[VocObject]]:
    """(image file name, objects) of one VOC XML file."""
    try:
        tree = ET.parse(path)
    except FileNotFoundError:
        raise DsdetError(f"VOC annotation file not found: {path}") from None
    except ET.ParseError as exc:
        line, column = exc.position
        raise DsdetError(f"{path} line {line} column {column}: malformed XML") from None
    root = tree.getroot()
    filename = root.findtext("filename", default="").strip() or f"{path.stem}.jpg"
    objects = []
    for index, element in enumerate(root.findall("object"), start=1):
        where = f"{path}: object {index}"
        box_element = element.find("bndbox")
        if box_element is None:
            raise DsdetError(f"{where} has no <bndbox>")
        box = tuple(_number(box_element, tag, where) for tag in ("xmin", "ymin", "xmax", "ymax"))
        difficult = (element.findtext("difficult") or "0").strip() or "0"
        if difficult not in ("0", "1"):
            raise DsdetError(f"{where}: <difficult> must be 0 or 1, got '{difficult}'")
        objects.append(VocObject(_text(element, "name", where), box, int(difficult), where))
    return filename, objects


def image_name(images_dir: Path, xml: Path, filename: str, report: LoadReport, skip_missing: bool) -> str:
    """The image of `xml` in `images_dir`: its <filename>, else the first `<stem>.<image suffix>` found (counted)."""
    if (images_dir / filename).is_file():
        return filename
    stems = list(dict.fromkeys((xml.stem, str(Path(filename).with_suffix("")))))
    suffixes = sorted(IMAGE_SUFFIXES)
    for name in (f"{stem}{case(s)}" for stem in stems for s in suffixes for case in (str.lower, str.upper)):
        if (images_dir / name).is_file():
            report.add(STALE_FILENAME, f"{xml} names {filename}, read {images_dir / name}")
            return name
    if skip_missing:
        return filename  # scan_image counts it as a missing image file
    raise DsdetError(
        f"{xml}: image file not found: {images_dir / filename}, "
        f"nor {' or '.join(stems)} with suffix {'/'.join(suffixes)}"
    )


def read_voc(
    root: Path,
    images_dir: Path,
    annotations: Path | None,
    classes: Sequence[str] | None,
    report: LoadReport,
    *,
    skip_missing: bool,
) -> tuple[list[ImageRecord], list[str], dict[int, int]]:
    """(records, class names, label -> category id 1..K); difficult objects become iscrowd=1."""
    parsed = [(path, *parse_xml(path)) for path in xml_files(root, annotations)]
    class_names = (
        list(classes) if classes is not None else sorted({o.name for _, _, objs in parsed for o in objs})
    )
    labels = {name: label for label, name in enumerate(class_names, start=1)}
    records, annotation_id = [], 0
    for image_id, (path, filename, objects) in enumerate(parsed, start=1):
        found = []
        for obj in objects:
            if obj.name not in labels:
                raise DsdetError(
                    f"{obj.where} has class '{obj.name}', which is not among the classes {class_names}"
                )
            annotation_id += 1
            xmin, ymin, xmax, ymax = obj.box
            # VOC pixels are 1-based and inclusive: [xmin, xmax] covers xmin - 1 .. xmax in 0-based edges.
            found.append(
                Annotation(
                    (xmin - 1, ymin - 1, xmax, ymax),
                    labels[obj.name],
                    annotation_id,
                    obj.where,
                    obj.difficult,
                )
            )
        name = image_name(images_dir, path, filename, report, skip_missing)
        size = scan_image(images_dir / name, report, skip_missing)
        if size is not None:
            records.append(make_record(images_dir / name, name, image_id, size, found, report))
    return records, class_names, {label: label for label in labels.values()}
