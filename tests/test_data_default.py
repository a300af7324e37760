"""The embedded default dataset: layout, statistics, determinism, and safe preparation by concurrent processes."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from dsdet.data import build_dataset, default_dataset_dir, prepare_default_dataset
from dsdet.data.default_dataset import MARKER, SPLITS, is_prepared, preparation_lock
from dsdet.data.scene_sources import CLASS_NAMES, load_sources
from dsdet.data.scenes import compose_scene
from dsdet.errors import DsdetError
from tests.runners import dsdet


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_layout_and_coco_json(default_data_dir):
    assert default_dataset_dir() == default_data_dir  # the session fixture points DSDET_DATA_DIR there
    for split, count in SPLITS.items():
        files = sorted((default_data_dir / "images" / split).glob("*.jpg"))
        assert len(files) == count
        with Image.open(files[0]) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (256, 256))
        api = COCO(str(default_data_dir / "annotations" / f"{split}.json"))
        assert [c["name"] for c in api.loadCats(api.getCatIds())] == list(CLASS_NAMES)
        assert len(api.getImgIds()) == count
    assert json.loads((default_data_dir / MARKER).read_text())["seed"] == 0


def test_statistics(default_data_dir):
    dataset = build_dataset("coco", default_data_dir, "images/train", "annotations/train.json")
    assert dataset.warnings == [] and dataset.num_classes == len(CLASS_NAMES) + 1
    per_image = [len(r.labels) for r in dataset.records]
    labels = np.concatenate([r.labels for r in dataset.records])
    boxes = np.concatenate([r.boxes for r in dataset.records])
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert 3 <= np.mean(per_image) <= 6
    assert min(np.bincount(labels)[1:]) >= 250  # every class well represented
    assert sides.min() >= 8 and sides.max() >= 100 and 20 <= np.median(sides) <= 50
    # some negatives and some crowded scenes
    assert 10 <= per_image.count(0) <= 60 and sum(n >= 6 for n in per_image) >= 30
    overlapping = 0
    for record in dataset.records:
        b = record.boxes
        inter_w = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
        inter_h = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
        overlapping += int(((inter_w > 0) & (inter_h > 0)).sum() - len(b)) // 2
    assert overlapping >= 20


def test_scenes_depend_on_the_seed_only():
    sources = load_sources("val")
    image, objects = compose_scene(sources, np.random.default_rng([3, 1, 7]))
    again, same = compose_scene(sources, np.random.default_rng([3, 1, 7]))
    other, _ = compose_scene(sources, np.random.default_rng([4, 1, 7]))
    assert np.array_equal(image, again) and not np.array_equal(image, other)
    assert [(o.label, o.box) for o in objects] == [(o.label, o.box) for o in same]
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(objects, same, strict=True))


def test_masks_are_visible_pixels_inside_the_box():
    sources = load_sources("val")
    _, objects = compose_scene(sources, np.random.default_rng([0, 1, 5]))
    covered = np.zeros((256, 256), int)
    for obj in objects:
        x1, y1, x2, y2 = obj.box
        rows, cols = np.nonzero(obj.mask)
        assert len(rows) and rows.min() >= y1 and rows.max() < y2 and cols.min() >= x1 and cols.max() < x2
        covered += obj.mask
    assert covered.max() <= 1  # instances never share a pixel


def test_prepare_waits_for_the_lock_and_leaves_nothing_half_written(default_data_dir, tmp_path):
    out = tmp_path / "prepared"
    with ThreadPoolExecutor(1) as pool:
        with preparation_lock(out):  # another rank or process is preparing
            waiting = pool.submit(prepare_default_dataset, out)
            with pytest.raises(TimeoutError):
                waiting.result(timeout=1.0)
            # nothing started meanwhile
            assert sorted(p.name for p in tmp_path.iterdir()) == [".prepared.lock"]
        assert waiting.result() == out
    assert file_hashes(out) == file_hashes(default_data_dir)  # same seed, same bytes
    # and no staging folder was left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == [".prepared.lock", "prepared"]


def test_cli_prepare_reuses_a_prepared_folder(default_data_dir):
    stamp = (default_data_dir / "annotations" / "val.json").stat().st_mtime_ns
    proc = dsdet("data", "prepare", "--out", str(default_data_dir))
    assert proc.stdout == f"{default_data_dir}\n"
    assert (default_data_dir / "annotations" / "val.json").stat().st_mtime_ns == stamp
    assert is_prepared(default_data_dir, seed=0) and not is_prepared(default_data_dir, seed=1)


def test_incomplete_copy_is_not_prepared(default_data_dir, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / MARKER).write_bytes((default_data_dir / MARKER).read_bytes())
    (copy / "annotations").mkdir()
    (copy / "annotations" / "train.json").write_bytes(
        (default_data_dir / "annotations" / "train.json").read_bytes()
    )
    assert not is_prepared(copy, seed=0)


def test_refuses_to_replace_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(
        DsdetError,
        match=r"mine exists and is not a dsdet default dataset: choose another folder or remove it$",
    ):
        prepare_default_dataset(tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_default_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DSDET_DATA_DIR", "/data/x")
    assert default_dataset_dir() == Path("/data/x")
    monkeypatch.delenv("DSDET_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_dataset_dir() == tmp_path / ".cache" / "dsdet" / "default-v2"
