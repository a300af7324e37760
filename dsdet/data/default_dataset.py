"""The embedded default dataset: COCO-format scenes made from real images that installed packages ship."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from dsdet.config.experiment import default_data_root
from dsdet.errors import DsdetError

VERSION = 2
SPLITS = {"train": 480, "val": 120}
JPEG_QUALITY = 90
MARKER = ".dsdet-prepared.json"


def default_dataset_dir() -> Path:
    """$DSDET_DATA_DIR, else ~/.cache/dsdet/default-v2."""
    return default_data_root()


def _split_files(split: str, seed: int) -> tuple[dict[str, bytes], dict]:
    """(JPEG bytes by file name, COCO dict) of one split, the same bytes for the same seed."""
    # Imported here: scikit-learn and scikit-image take a second or more to import, and only preparing needs them.
    from dsdet.data.scene_sources import CLASS_NAMES, load_sources
    from dsdet.data.scenes import IMAGE_SIZE, compose_scene

    sources = load_sources(split)
    split_code = list(SPLITS).index(split)
    files, images, annotations = {}, [], []
    for image_id in range(1, SPLITS[split] + 1):
        pixels, objects = compose_scene(sources, np.random.default_rng([seed, split_code, image_id]))
        name = f"{image_id:06d}.jpg"
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY)
        files[name] = buffer.getvalue()
        images.append({"id": image_id, "file_name": name, "height": IMAGE_SIZE, "width": IMAGE_SIZE})
        for obj in objects:
            x1, y1, x2, y2 = obj.box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": obj.label,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "segmentation": _rle(obj.mask),
                    "iscrowd": 0,
                }
            )
    categories = [
        {"id": i, "name": name, "supercategory": "face" if name == "face" else "digit"}
        for i, name in enumerate(CLASS_NAMES, start=1)
    ]
    return files, {"images": images, "annotations": annotations, "categories": categories}


def _rle(mask: np.ndarray) -> dict:
    """COCO run-length encoding of a boolean mask, JSON-ready."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _write_dataset(out: Path, seed: int) -> None:
    """Write every split and, last, the marker listing each file's size and one content hash."""
    sizes, digest = {}, hashlib.sha256()
    for split in SPLITS:
        files, coco = _split_files(split, seed)
        files = {f"images/{split}/{name}": data for name, data in files.items()}
        files[f"annotations/{split}.json"] = json.dumps(coco).encode()
        for relative, data in files.items():
            path = out / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            sizes[relative] = len(data)
            digest.update(relative.encode() + b"\0" + data)
    marker = {"version": VERSION, "seed": seed, "sha256": digest.hexdigest(), "files": sizes}
    (out / MARKER).write_text(json.dumps(marker, indent=1))


def is_prepared(root: Path, seed: int) -> bool:
    """Whether `root` holds a complete default dataset of this version and seed."""
    try:
        marker = json.loads((root / MARKER).read_text())
        if marker["version"] != VERSION or marker["seed"] != seed:
            return False
        return all((root / name).stat().st_size == size for name, size in marker["files"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


@contextlib.contextmanager
def preparation_lock(root: Path) -> Iterator[None]:
    """Hold an exclusive file lock beside `root` (serialises ranks and processes preparing at once)."""
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _replaceable(root: Path) -> None:
    """Refuse to replace a non-empty folder that is not a default dataset."""
    if root.exists() and not (root / MARKER).exists() and (not root.is_dir() or any(root.iterdir())):
        raise DsdetError(
            f"{root} exists and is not a dsdet default dataset: choose another folder or remove it"
        )


def prepare_default_dataset(root: Path | None = None, *, seed: int = 0, force: bool = False) -> Path:
    """Write the default dataset to `root` (default: default_dataset_dir()) unless already there; return root."""
    root = Path(root if root is not None else default_dataset_dir()).expanduser().absolute()
    if not force and is_prepared(root, seed):
        return root
    _replaceable(root)
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        with preparation_lock(root):
            if not force and is_prepared(root, seed):
                return root
            _replaceable(root)
            staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
            try:
                _write_dataset(staging, seed)
                if root.exists():
                    old = root.with_name(f".{root.name}.old-{os.getpid()}")
                    root.rename(old)
                    shutil.rmtree(old)
                staging.rename(root)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        raise DsdetError(f"cannot write the default dataset to {root}: {exc}") from None
    return root
