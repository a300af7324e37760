"""The coco, voc and yolo readers turn the same boxes on disk into the same samples (docs/CONTRACTS.md form)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from torchvision import tv_tensors

from dsdet.data import build_dataset

CLASSES = ["cat", "dog"]
CATEGORY_IDS = {"cat": 3, "dog": 7}  # deliberately not 1..K
SIZE = (30, 40)  # (height, width) of every image
# file -> [(class, x1, y1, x2, y2)]; c.png has no boxes (a negative)
BOXES = {
    "a.png": [("cat", 2, 3, 12, 13), ("dog", 20, 5, 35, 25)],
    "b.png": [("dog", 0, 0, 40, 30)],
    "c.png": [],
}


def write_images(folder: Path, names=tuple(BOXES), mode: str = "RGB") -> None:
    """Small images with a different colour each (PNG, so pixels survive exactly)."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        pixels = np.full((*SIZE, 3), 40 * (k + 1), dtype=np.uint8)
        Image.fromarray(pixels).convert(mode).save(folder / name)


def coco_dict(boxes=BOXES) -> dict:
    """COCO JSON content for `boxes`; image ids 1.. in file order, annotation ids from 100."""
    images, annotations = [], []
    for image_id, (name, objects) in enumerate(boxes.items(), start=1):
        images.append({"id": image_id, "file_name": name, "height": SIZE[0], "width": SIZE[1]})
        for cls, x1, y1, x2, y2 in objects:
            annotations.append(
                {
                    "id": 100 + len(annotations),
                    "image_id": image_id,
                    "category_id": CATEGORY_IDS[cls],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": float((x2 - x1) * (y2 - y1)),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i, "name": n} for n, i in CATEGORY_IDS.items()]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_coco(root: Path, coco: dict | None = None) -> Path:
    """images/ + annotations.json under root."""
    write_images(root / "images")
    (root / "annotations.json").write_text(json.dumps(coco or coco_dict()))
    return root


def voc_xml(filename: str, objects, extra: str = "") -> str:
    """A VOC XML file (1-based inclusive pixel boxes)."""
    parts = [f"<annotation><filename>{filename}</filename>{extra}"]
    for cls, x1, y1, x2, y2 in objects:
        parts.append(
            f"<object><name>{cls}</name><difficult>0</difficult>"
            f"<bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        )
    return "".join(parts) + "</annotation>"


def write_voc(root: Path) -> Path:
    """JPEGImages/ + Annotations/*.xml + ImageSets/Main/train.txt."""
    write_images(root / "JPEGImages")
    (root / "Annotations").mkdir()
    for name, objects in BOXES.items():
        (root / "Annotations" / f"{Path(name).stem}.xml").write_text(voc_xml(name, objects))
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("".join(f"{Path(n).stem}\n" for n in BOXES))
    return root


def write_yolo(root: Path) -> Path:
    """images/ + labels/*.txt (normalised cx cy w h); c.png has an empty label file."""
    write_images(root / "images")
    (root / "labels").mkdir()
    height, width = SIZE
    for name, objects in BOXES.items():
        lines = [
            f"{CLASSES.index(cls)} {(x1 + x2) / 2 / width} {(y1 + y2) / 2 / height} {(x2 - x1) / width} {(y2 - y1) / height}"
            for cls, x1, y1, x2, y2 in objects
        ]
        (root / "labels" / f"{Path(name).stem}.txt").write_text("\n".join(lines))
    return root


def load(fmt: str, root: Path, **kwargs):
    """The tiny dataset of `fmt` under root."""
    if fmt == "coco":
        return build_dataset("coco", write_coco(root), "images", "annotations.json", **kwargs)
    if fmt == "voc":
        return build_dataset("voc", write_voc(root), "JPEGImages", "ImageSets/Main/train.txt", **kwargs)
    return build_dataset("yolo", write_yolo(root), "images", "labels", CLASSES, **kwargs)


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo"])
def test_reader_gives_the_contract_sample(fmt, tmp_path):
    dataset = load(fmt, tmp_path)
    assert (len(dataset), dataset.num_classes, dataset.class_names) == (3, 3, CLASSES)
    assert dataset.image_ids == [1, 2, 3]
    assert [dataset.image_size(i) for i in range(3)] == [SIZE] * 3
    for index, objects in enumerate(BOXES.values()):
        image, target = dataset[index]
        assert (
            isinstance(image, tv_tensors.Image) and image.dtype == torch.float32 and image.shape == (3, *SIZE)
        )
        assert torch.allclose(image, torch.full_like(image, 40 * (index + 1) / 255))
        boxes = target["boxes"]
        assert (
            isinstance(boxes, tv_tensors.BoundingBoxes) and boxes.format == tv_tensors.BoundingBoxFormat.XYXY
        )
        assert boxes.canvas_size == SIZE and boxes.dtype == torch.float32
        expected = torch.tensor([o[1:] for o in objects], dtype=torch.float32).reshape(-1, 4)
        torch.testing.assert_close(boxes.as_subclass(torch.Tensor), expected, atol=1e-4, rtol=0)
        assert target["labels"].dtype == torch.int64
        assert target["labels"].tolist() == [CLASSES.index(o[0]) + 1 for o in objects]
        assert target["image_id"] == index + 1
        torch.testing.assert_close(
            target["area"], (expected[:, 2] - expected[:, 0]) * (expected[:, 3] - expected[:, 1])
        )
        assert target["iscrowd"].tolist() == [0] * len(objects)
        assert "masks" not in target


@pytest.mark.parametrize("fmt", ["coco", "voc", "yolo"])
def test_coco_ground_truth_matches_the_targets(fmt, tmp_path):
    dataset = load(fmt, tmp_path)
    gt = dataset.coco_ground_truth()
    expected_ids = CATEGORY_IDS if fmt == "coco" else {"cat": 1, "dog": 2}
    assert dataset.label_to_category_id == {1: expected_ids["cat"], 2: expected_ids["dog"]}
    assert sorted((c["id"], c["name"]) for c in gt["categories"]) == sorted(
        (i, n) for n, i in expected_ids.items()
    )
    assert [(i["id"], i["height"], i["width"]) for i in gt["images"]] == [(k, *SIZE) for k in (1, 2, 3)]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    api = COCO(str(path))
    for index in range(len(dataset)):
        _, target = dataset[index]
        annotations = api.loadAnns(api.getAnnIds(imgIds=[target["image_id"]]))
        xywh = [[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in target["boxes"].tolist()]
        np.testing.assert_allclose(
            [a["bbox"] for a in annotations] or np.zeros((0, 4)), np.reshape(xywh, (-1, 4)), atol=1e-4
        )
        categories = [dataset.label_to_category_id[label] for label in target["labels"].tolist()]
        assert [a["category_id"] for a in annotations] == categories
        assert all(a["iscrowd"] == 0 and a["area"] > 0 for a in annotations)


@pytest.mark.parametrize(
    ("mode", "suffix", "value"),
    [
        ("L", ".png", 80),
        ("LA", ".png", 80),
        ("RGBA", ".png", 80),
        ("P", ".png", 80),
        ("CMYK", ".jpg", 80),
        ("I;16", ".png", 80),
        ("1", ".png", 255),
    ],
)
def test_image_modes_become_rgb(mode, suffix, value, tmp_path):
    (tmp_path / "images").mkdir()
    gray = Image.fromarray(np.full(SIZE, value, dtype=np.uint8))
    image = gray.point(lambda v: v * 256, "I").convert("I;16") if mode == "I;16" else gray.convert(mode)
    image.save(tmp_path / "images" / f"x{suffix}", **({"transparency": 0} if mode == "P" else {}))
    coco = {
        "images": [{"id": 1, "file_name": f"x{suffix}"}],
        "annotations": [],
        "categories": [{"id": 1, "name": "cat"}],
    }
    (tmp_path / "a.json").write_text(json.dumps(coco))
    assert Image.open(tmp_path / "images" / f"x{suffix}").mode == mode
    rgb, _ = build_dataset("coco", tmp_path, "images", "a.json")[0]
    assert rgb.shape == (3, *SIZE) and rgb.dtype == torch.float32
    assert 0.0 <= float(rgb.min()) and float(rgb.max()) <= 1.0
    torch.testing.assert_close(rgb, torch.full_like(rgb, value / 255), atol=3 / 255, rtol=0)


def test_coco_masks_from_polygons_and_rle(tmp_path):
    coco = coco_dict()
    polygon = [[2, 3, 12, 3, 12, 13, 2, 13]]  # the cat box as a polygon
    rle = {"size": list(SIZE), "counts": [0, SIZE[0] * SIZE[1]]}  # uncompressed RLE: the whole image
    coco["annotations"][0]["segmentation"] = polygon
    coco["annotations"][1]["segmentation"] = rle
    coco["annotations"][2]["segmentation"] = rle
    dataset = build_dataset("coco", write_coco(tmp_path, coco), "images", "annotations.json", with_masks=True)
    _, target = dataset[0]
    masks = target["masks"]
    assert isinstance(masks, tv_tensors.Mask) and masks.dtype == torch.uint8 and masks.shape == (2, *SIZE)
    ys, xs = torch.nonzero(masks[0], as_tuple=True)
    assert (int(xs.min()), int(ys.min())) == (2, 3) and 12 <= int(xs.max()) + 1 <= 13
    assert int(masks[1].sum()) == SIZE[0] * SIZE[1]
    assert dataset[2][1]["masks"].shape == (0, *SIZE)
    assert dataset.coco_ground_truth()["annotations"][0]["segmentation"] == polygon


def test_coco_classes_select_and_order_categories(tmp_path):
    dataset = build_dataset("coco", write_coco(tmp_path), "images", "annotations.json", classes=["dog"])
    assert dataset.class_names == ["dog"] and dataset.label_to_category_id == {1: 7}
    assert dataset[0][1]["labels"].tolist() == [1]
    assert any("categories not in `classes` ignored" in line for line in dataset.warnings)


def test_voc_difficult_becomes_crowd_and_all_xml_without_list(tmp_path):
    write_voc(tmp_path)
    xml = (
        (tmp_path / "Annotations" / "b.xml")
        .read_text()
        .replace("<difficult>0</difficult>", "<difficult>1</difficult>")
    )
    (tmp_path / "Annotations" / "b.xml").write_text(xml)
    dataset = build_dataset("voc", tmp_path, "JPEGImages", None)
    assert len(dataset) == 3 and dataset.class_names == CLASSES
    assert dataset[1][1]["iscrowd"].tolist() == [1]
    assert dataset.coco_ground_truth()["annotations"][2]["iscrowd"] == 1
