"""Shared fixtures: one embedded default dataset per test session, and a small COCO split cut from it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def default_data_dir(tmp_path_factory) -> Path:
    """The embedded default dataset, prepared once for the session; subprocesses find it via DSDET_DATA_DIR."""
    from dsdet.data import prepare_default_dataset

    root = tmp_path_factory.mktemp("dsdet-data") / "default"
    os.environ["DSDET_DATA_DIR"] = str(root)
    return prepare_default_dataset(root)


def _subset(src: Path, dst: Path, n: int) -> None:
    coco = json.loads(src.read_text())
    images = coco["images"][:n]
    ids = {img["id"] for img in images}
    coco["images"] = images
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in ids]
    dst.write_text(json.dumps(coco))


@pytest.fixture(scope="session")
def mini_data_dir(default_data_dir: Path, tmp_path_factory) -> Path:
    """A COCO root with 32 train and 8 val images of the default dataset (same image files)."""
    root = tmp_path_factory.mktemp("dsdet-mini")
    (root / "annotations").mkdir()
    (root / "images").symlink_to(default_data_dir / "images")
    _subset(default_data_dir / "annotations" / "train.json", root / "annotations" / "train.json", 32)
    _subset(default_data_dir / "annotations" / "val.json", root / "annotations" / "val.json", 8)
    return root


@pytest.fixture(scope="module")
def process_group():
    """A real one-rank gloo process group joined through dsdet's own init (for DeepSpeed code run in-process)."""
    import deepspeed.comm

    from dsdet.engine.distributed import init_distributed

    saved = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env = init_distributed()
    yield env
    # DeepSpeed's own destroy also drops the groups it cached (a later module's engine would use stale ones).
    deepspeed.comm.destroy_process_group()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
