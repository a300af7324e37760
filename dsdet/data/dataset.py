"""DetectionDataset: decoded samples in the one form of docs/CONTRACTS.md, plus COCO ground truth for evaluation."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from dsdet.data.images import PIL_ERRORS, load_rgb
from dsdet.data.masks import decode_masks
from dsdet.data.records import ImageRecord
from dsdet.data.report import LOGGER
from dsdet.data.samplers import SeededIndex

Sample = tuple[tv_tensors.Image, dict[str, Any]]
# An image that fails to decode mid-epoch becomes this grey negative, so the epoch (and every rank) goes on.
FALLBACK_GREY = 0.5


class DetectionDataset(Dataset):
    """Images with targets (boxes XYXY, labels 1..K, image_id, area, iscrowd, masks when asked for)."""

    def __init__(
        self,
        records: Sequence[ImageRecord],
        class_names: Sequence[str],
        label_to_category_id: Mapping[int, int],
        transforms: Callable[..., Any] | None = None,
        warnings: Sequence[str] = (),
    ) -> None:
        self.records = list(records)
        self.class_names = list(class_names)
        self.label_to_category_id = dict(label_to_category_id)
        self.transforms = transforms
        self.warnings = list(warnings)
        self._undecodable: set[str] = set()

    @property
    def num_classes(self) -> int:
        """Number of classes including background (K + 1)."""
        return len(self.class_names) + 1

    @property
    def image_ids(self) -> list[int]:
        """The image id of every sample, in index order."""
        return [record.image_id for record in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def image_size(self, index: int) -> tuple[int, int]:
        """(height, width) of image `index`, from the load-time header check (no decoding)."""
        record = self.records[index]
        return record.height, record.width

    def __getitem__(self, key: int | SeededIndex) -> Sample:
        """Sample `key`: an index, or (index, seed) to draw its augmentations from `seed` alone (the process's
        random state is left as it was)."""
        index, seed = key if isinstance(key, tuple) else (key, None)
        image, target = self._decode(self.records[index])
        if self.transforms is None:
            return image, target
        if seed is None:
            return self.transforms(image, target)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transforms(image, target)

    def _decode(self, record: ImageRecord) -> Sample:
        """The untransformed sample; a file that no longer decodes gives a grey negative and one warning."""
        canvas = (record.height, record.width)
        try:
            image = load_rgb(record.path)
            if tuple(image.shape[-2:]) != canvas:
                raise OSError(f"size changed to {tuple(image.shape[-2:])} since loading")
        except PIL_ERRORS as exc:
            self._warn_undecodable(record, exc)
            image = tv_tensors.Image(torch.full((3, *canvas), FALLBACK_GREY))
            return image, self._target(record, keep=torch.zeros(len(record.labels), dtype=torch.bool))
        return image, self._target(record)

    def _target(self, record: ImageRecord, keep: torch.Tensor | None = None) -> dict[str, Any]:
        """The target dict of `record`, restricted to the annotations in `keep` when given."""
        canvas = (record.height, record.width)
        select = slice(None) if keep is None else keep
        target = {
            "boxes": tv_tensors.BoundingBoxes(
                torch.from_numpy(record.boxes)[select],
                format=tv_tensors.BoundingBoxFormat.XYXY,
                canvas_size=canvas,
            ),
            "labels": torch.from_numpy(record.labels)[select],
            "image_id": record.image_id,
            "area": torch.from_numpy(record.areas)[select],
            "iscrowd": torch.from_numpy(record.iscrowd)[select],
        }
        if record.segmentations is not None:
            masks = torch.from_numpy(decode_masks(record.segmentations, *canvas))
            target["masks"] = tv_tensors.Mask(masks[select])
        return target

    def _warn_undecodable(self, record: ImageRecord, exc: BaseException) -> None:
        """Log once per file (per process) that it was replaced by a grey negative."""
        if str(record.path) in self._undecodable:
            return
        self._undecodable.add(str(record.path))
        LOGGER.warning("cannot decode image %s (%s): used as a grey image without boxes", record.path, exc)

    def coco_ground_truth(self) -> dict[str, Any]:
        """COCO-format ground truth (images, annotations, categories) of the untransformed boxes."""
        images, annotations = [], []
        for record in self.records:
            images.append(
                {
                    "id": record.image_id,
                    "file_name": record.file_name,
                    "height": record.height,
                    "width": record.width,
                }
            )
            for k, (x1, y1, x2, y2) in enumerate(record.boxes.tolist()):
                annotation = {
                    "id": int(record.annotation_ids[k]),
                    "image_id": record.image_id,
                    "category_id": self.label_to_category_id[int(record.labels[k])],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": float(record.areas[k]),
                    "iscrowd": int(record.iscrowd[k]),
                }
                if record.segmentations is not None:
                    annotation["segmentation"] = record.segmentations[k]
                annotations.append(annotation)
        categories = [
            {"id": self.label_to_category_id[label], "name": name}
            for label, name in enumerate(self.class_names, start=1)
        ]
        return {"images": images, "annotations": annotations, "categories": categories}
