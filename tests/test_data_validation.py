"""Bad datasets: one-line DsdetErrors naming the file and annotation, or fixes counted in one warning line per kind."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from dsdet.cli import main
from dsdet.data import build_dataset
from dsdet.errors import DsdetError
from tests.test_data_formats import (
    BOXES,
    CLASSES,
    coco_dict,
    voc_xml,
    write_coco,
    write_images,
    write_voc,
    write_yolo,
)


def error_of(call, *args, **kwargs) -> str:
    """The one-line message of the DsdetError that `call` raises."""
    with pytest.raises(DsdetError) as excinfo:
        call(*args, **kwargs)
    text = str(excinfo.value)
    assert "\n" not in text
    return text


def coco_with(tmp_path: Path, edit) -> Path:
    """A COCO dataset whose JSON dict went through `edit` (which changes it in place)."""
    coco = coco_dict()
    edit(coco)
    return write_coco(tmp_path, coco)


def load_coco(root: Path, **kwargs):
    return build_dataset("coco", root, "images", "annotations.json", **kwargs)


def test_missing_image_is_an_error_or_skipped_with_a_count(tmp_path, caplog):
    write_coco(tmp_path)
    (tmp_path / "images" / "b.png").unlink()
    assert error_of(load_coco, tmp_path) == f"image file not found: {tmp_path / 'images' / 'b.png'}"
    with caplog.at_level(logging.WARNING, logger="dsdet.data"):
        dataset = load_coco(tmp_path, skip_missing=True)
    assert dataset.image_ids == [1, 3] and [i["id"] for i in dataset.coco_ground_truth()["images"]] == [1, 3]
    assert caplog.messages == [
        f"{tmp_path / 'annotations.json'}: 1 missing image files skipped (first: {tmp_path / 'images' / 'b.png'})"
    ]


def test_unreadable_image_is_an_error_or_skipped(tmp_path):
    write_coco(tmp_path)
    (tmp_path / "images" / "a.png").write_bytes(b"not an image at all")
    message = error_of(load_coco, tmp_path)
    assert message.startswith(f"cannot read image {tmp_path / 'images' / 'a.png'}: ")
    dataset = load_coco(tmp_path, skip_missing=True)
    assert dataset.image_ids == [2, 3]
    assert dataset.warnings[0].startswith(
        f"{tmp_path / 'annotations.json'}: 1 unreadable image files skipped"
    )


def test_image_that_stops_decoding_mid_epoch_becomes_a_grey_negative(tmp_path, caplog):
    dataset = load_coco(write_coco(tmp_path))
    (tmp_path / "images" / "a.png").write_bytes((tmp_path / "images" / "a.png").read_bytes()[:60])
    with caplog.at_level(logging.WARNING, logger="dsdet.data"):
        image, target = dataset[0]
        dataset[0]
    assert torch.all(image == 0.5) and image.shape == (3, 30, 40)
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,) and target["image_id"] == 1
    assert (
        len(caplog.messages) == 1
        and f"cannot decode image {tmp_path / 'images' / 'a.png'}" in caplog.messages[0]
    )


def test_degenerate_boxes_are_dropped_and_counted_once(tmp_path, caplog):
    def edit(coco):
        coco["annotations"][0]["bbox"] = [2, 3, 0, 10]  # zero width
        coco["annotations"][2]["bbox"] = [50, 40, 5, 5]  # entirely outside the 40x30 image

    with caplog.at_level(logging.WARNING, logger="dsdet.data"):
        dataset = load_coco(coco_with(tmp_path, edit))
    assert dataset[0][1]["labels"].tolist() == [2] and dataset[1][1]["boxes"].shape == (0, 4)
    assert len(dataset.coco_ground_truth()["annotations"]) == 1
    assert caplog.messages == [
        f"{tmp_path / 'annotations.json'}: 2 degenerate boxes (zero or negative size inside the image) dropped "
        f"(first: {tmp_path / 'annotations.json'}: annotation id 100)"
    ]


def test_boxes_outside_the_image_are_clipped(tmp_path):
    def edit(coco):
        coco["annotations"][1]["bbox"] = [-5, 5, 50, 30]  # x -5..45, y 5..35 on a 40x30 image

    dataset = load_coco(coco_with(tmp_path, edit))
    assert dataset[0][1]["boxes"].tolist()[1] == [0.0, 5.0, 40.0, 30.0]
    assert dataset.coco_ground_truth()["annotations"][1]["bbox"] == [0.0, 5.0, 40.0, 25.0]
    assert dataset.warnings == [
        f"{tmp_path / 'annotations.json'}: 1 boxes reaching outside the image clipped "
        f"(first: {tmp_path / 'annotations.json'}: annotation id 101)"
    ]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda c: c["annotations"][1].update(category_id=5),
            "annotation id 101 has category_id 5, which is not in 'categories'",
        ),
        (
            lambda c: c["annotations"][0].update(image_id=9),
            "annotation id 100 refers to image id 9, which is not in 'images'",
        ),
        (lambda c: c["annotations"][2].pop("bbox"), "annotation id 102 has no 'bbox'"),
        (
            lambda c: c["annotations"][2].update(bbox=[1, 2, 3]),
            "annotation id 102: 'bbox' must be [x, y, width, height], got [1, 2, 3]",
        ),
        (lambda c: c["annotations"][0].pop("id"), "annotations[0] has no 'id'"),
        (lambda c: c["images"][1].update(id=1), "image id 1 appears twice"),
        (lambda c: c["images"][0].update(width=64), "image id 1 says 64x30 (WxH), but"),
        (lambda c: c.pop("categories"), "'categories' must be a list"),
    ],
)
def test_bad_coco_annotations_name_file_and_annotation(tmp_path, edit, expected):
    message = error_of(load_coco, coco_with(tmp_path, edit))
    assert message.startswith(f"{tmp_path / 'annotations.json'}: ") and expected in message


def test_coco_masks_need_a_segmentation(tmp_path):
    message = error_of(load_coco, write_coco(tmp_path), with_masks=True)
    assert (
        message
        == f"{tmp_path / 'annotations.json'}: annotation id 100: segmentation must be polygons [[x1, y1, x2, y2, x3, y3, ...], ...] or an RLE dict"
    )


def test_malformed_json_names_file_and_line(tmp_path):
    write_coco(tmp_path)
    (tmp_path / "annotations.json").write_text('{"images": [],\n "annotations": [,]}')
    assert error_of(load_coco, tmp_path).startswith(
        f"{tmp_path / 'annotations.json'} line 2 column 18: malformed JSON"
    )


def test_voc_errors_name_file_line_and_object(tmp_path):
    write_voc(tmp_path)
    xml = tmp_path / "Annotations" / "a.xml"
    load = lambda: build_dataset("voc", tmp_path, "JPEGImages", "ImageSets/Main/train.txt", CLASSES)  # noqa: E731
    xml.write_text(voc_xml("a.png", [("cat", 1, 1, 5, 5), ("bird", 2, 2, 6, 6)]))
    assert (
        error_of(load) == f"{xml}: object 2 has class 'bird', which is not among the classes ['cat', 'dog']"
    )
    xml.write_text(voc_xml("a.png", BOXES["a.png"]).replace("<xmax>12</xmax>", "<xmax>twelve</xmax>"))
    assert error_of(load) == f"{xml}: object 1: <xmax> 'twelve' is not a number"
    xml.write_text("<annotation>\n<filename>a.png</filename>\n<object></annotation>")
    assert error_of(load).startswith(f"{xml} line 3 column ")
    xml.write_text(voc_xml("a.png", BOXES["a.png"]))
    (tmp_path / "ImageSets" / "Main" / "train.txt").write_text("a\nzz\n")
    assert error_of(load) == f"VOC annotation file not found: {tmp_path / 'Annotations' / 'zz.xml'}"


def write_stale_voc(root: Path, xml_name: str, filename: str, image: str) -> Path:
    """JPEGImages/<image> and Annotations/<xml_name> whose <filename> (a.png's boxes) is stale."""
    write_images(root / "JPEGImages", [image])
    (root / "Annotations").mkdir()
    (root / "Annotations" / xml_name).write_text(voc_xml(filename, BOXES["a.png"]))
    return root


@pytest.mark.parametrize(
    ("xml_name", "filename", "image"),
    [
        ("scene.xml", "scene.tif", "scene.png"),
        ("scene.xml", "old_name.jpg", "scene.png"),
        ("0001.xml", "scene.tif", "scene.PNG"),
    ],
)
def test_voc_stale_filename_reads_the_image_of_the_same_stem(tmp_path, xml_name, filename, image):
    root = write_stale_voc(tmp_path, xml_name, filename, image)
    dataset = build_dataset("voc", root, "JPEGImages", None, CLASSES)
    _, target = dataset[0]
    assert dataset.records[0].path == root / "JPEGImages" / image
    assert dataset.coco_ground_truth()["images"][0]["file_name"] == image
    assert target["boxes"].tolist() == [[2, 3, 12, 13], [20, 5, 35, 25]]
    assert target["labels"].tolist() == [1, 2]
    xml = root / "Annotations" / xml_name
    assert dataset.warnings == [
        f"{root}: 1 XML files naming a missing <filename> read the image of the same stem"
        f" (first: {xml} names {filename}, read {root / 'JPEGImages' / image})"
    ]


def test_voc_without_any_image_of_the_stem_is_an_error_or_skipped(tmp_path):
    write_voc(tmp_path)
    xml = tmp_path / "Annotations" / "a.xml"
    xml.write_text(voc_xml("gone.tif", BOXES["a.png"]))
    (tmp_path / "JPEGImages" / "a.png").unlink()
    load = lambda **kwargs: build_dataset("voc", tmp_path, "JPEGImages", None, CLASSES, **kwargs)  # noqa: E731
    assert error_of(load) == (
        f"{xml}: image file not found: {tmp_path / 'JPEGImages' / 'gone.tif'},"
        " nor a or gone with suffix .bmp/.jpeg/.jpg/.png/.tif/.tiff/.webp"
    )
    dataset = load(skip_missing=True)
    assert dataset.image_ids == [2, 3]
    assert dataset.warnings == [
        f"{tmp_path}: 1 missing image files skipped (first: {tmp_path / 'JPEGImages' / 'gone.tif'})"
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("2 0.5 0.5 0.2 0.2", "class 2 is not in 0..1 (classes: 2)"),
        ("0 0.5 0.5 0.2", "expected 5 values 'class cx cy w h', got 4"),
        ("cat 0.5 0.5 0.2 0.2", "expected an integer class and 4 numbers, got 'cat 0.5 0.5 0.2 0.2'"),
    ],
)
def test_yolo_errors_name_file_and_line(tmp_path, line, expected):
    write_yolo(tmp_path)
    labels = tmp_path / "labels" / "b.txt"
    labels.write_text(f"0 0.5 0.5 0.1 0.1\n\n{line}\n")
    message = error_of(build_dataset, "yolo", tmp_path, "images", "labels", CLASSES)
    assert message == f"{labels} line 3: {expected}"


def test_yolo_without_label_file_is_a_negative(tmp_path):
    write_yolo(tmp_path)
    (tmp_path / "labels" / "a.txt").unlink()
    dataset = build_dataset("yolo", tmp_path, "images", "labels", CLASSES)
    assert dataset[0][1]["boxes"].shape == (0, 4)
    assert dataset.warnings == [
        f"{tmp_path}/labels: 1 images without a label file kept as negatives (first: {tmp_path}/labels/a.txt)"
    ]


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        (
            ("yolo", "images", "labels"),
            {},
            "yolo format needs `classes`: the names of class 0, 1, ... in order",
        ),
        (
            ("coco", "images", "annotations.json"),
            {"classes": ["cat", "cat"]},
            "classes repeat a name: ['cat', 'cat']",
        ),
        (
            ("voc", "images", None),
            {"with_masks": True},
            "voc annotations have no masks: with_masks needs the coco format",
        ),
        (("pascal", "images", None), {}, "unknown dataset format 'pascal': expected one of coco, voc, yolo"),
        (("coco", "pictures", "annotations.json"), {}, "image folder not found: {root}/pictures"),
        (("coco", "images", "missing.json"), {}, "annotation file not found: {root}/missing.json"),
        (
            ("coco", "images", "annotations.json"),
            {"classes": ["cow"]},
            "{root}/annotations.json: classes ['cow'] are not among the categories ['cat', 'dog']",
        ),
    ],
)
def test_bad_arguments(tmp_path, args, kwargs, expected):
    write_coco(tmp_path)
    fmt, images, annotations = args
    assert error_of(build_dataset, fmt, tmp_path, images, annotations, **kwargs) == expected.format(
        root=tmp_path
    )


def test_cli_check_prints_counts_and_warnings(tmp_path, capsys, caplog):
    def edit(coco):
        coco["annotations"][1]["bbox"] = [-5, 5, 50, 30]

    root = coco_with(tmp_path, edit)
    args = [
        "--format",
        "coco",
        "--root",
        str(root),
        "--images",
        "images",
        "--annotations",
        "annotations.json",
    ]
    with caplog.at_level(logging.WARNING, logger="dsdet.data"):
        assert main(["data", "check", *args]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "3 images (1 without boxes), 3 boxes, 2 classes"
    assert lines[1].split() == ["1", "cat", "1", "boxes", "in", "1", "images"]
    assert lines[2].split() == ["2", "dog", "2", "boxes", "in", "2", "images"]
    assert lines[3] == "warnings: 1"
    assert len(caplog.messages) == 1 and "1 boxes reaching outside the image clipped" in caplog.messages[0]


def test_cli_check_error_is_one_line_and_exit_2(tmp_path, capsys):
    root = write_coco(tmp_path)
    args = [
        "data",
        "check",
        "--format",
        "yolo",
        "--root",
        str(root),
        "--images",
        "images",
        "--annotations",
        "x",
    ]
    assert main(args) == 2
    expected = "dsdet: error: yolo format needs `classes`: the names of class 0, 1, ... in order\n"
    assert capsys.readouterr().err == expected


def test_cli_check_counts_a_stale_voc_filename_as_a_warning(tmp_path, capsys, caplog):
    root = write_stale_voc(tmp_path, "scene.xml", "scene.tif", "scene.png")
    args = ["--format", "voc", "--root", str(root), "--images", "JPEGImages", "--classes", "cat,dog"]
    with caplog.at_level(logging.WARNING, logger="dsdet.data"):
        assert main(["data", "check", *args]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "1 images (0 without boxes), 2 boxes, 2 classes"
    assert lines[3] == "warnings: 1"
    assert caplog.messages == [
        f"{root}: 1 XML files naming a missing <filename> read the image of the same stem"
        f" (first: {root / 'Annotations' / 'scene.xml'} names scene.tif, read {root / 'JPEGImages' / 'scene.png'})"
    ]
