"""Detection batches as fixed-shape tensors that can cross pipeline stage boundaries, and back.

A batch `(images, targets)` becomes `((images, geometry), (boxes, labels, counts))`, the
`(inputs, labels)` pair DeepSpeed's PipelineEngine takes from its data iterator:

- `images` float [B, 3, H, W]: the model's own GeneralizedRCNNTransform (normalise, resize, pad) applied at
  packing time, then zero-padded at the bottom/right to the fixed canvas H x W;
- `geometry` int64 [B, 4]: per image the resized height and width, then the canvas height and width;
- `boxes` float [B, M, 4] (XYXY, resized coordinates), `labels` int64 [B, M] (0 where padded), `counts` int64 [B].
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import Tensor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from dsdet.errors import DsdetError

PipelineInputs = tuple[Tensor, Tensor]
PipelineLabels = tuple[Tensor, Tensor, Tensor]


def canvas_size(transform: GeneralizedRCNNTransform) -> tuple[int, int]:
    """The fixed (H, W) every packed batch has: the transform's fixed size, else max_size², padded to its divisor."""
    height, width = transform.fixed_size if transform.fixed_size is not None else (transform.max_size,) * 2
    step = transform.size_divisible
    return math.ceil(height / step) * step, math.ceil(width / step) * step


def _sample_name(index: int, target: dict) -> str:
    image_id = target.get("image_id")
    return f"sample {index}" + (f" (image_id {int(image_id)})" if image_id is not None else "")


def _plain_targets(targets: Sequence[dict]) -> list[dict[str, Tensor]]:
    """Only boxes and labels, as plain tensors, checked for shape."""
    plain = []
    for index, target in enumerate(targets):
        if "boxes" not in target or "labels" not in target:
            raise DsdetError(f"{_sample_name(index, target)}: target needs 'boxes' and 'labels'")
        boxes = torch.as_tensor(target["boxes"]).as_subclass(Tensor).float()
        labels = torch.as_tensor(target["labels"]).as_subclass(Tensor).long()
        if boxes.dim() != 2 or boxes.shape[-1] != 4 or labels.shape != boxes.shape[:1]:
            raise DsdetError(
                f"{_sample_name(index, target)}: boxes must be [N, 4] with N labels, "
                f"got boxes {list(boxes.shape)} and labels {list(labels.shape)}"
            )
        plain.append({"boxes": boxes, "labels": labels})
    return plain


class Packer:
    """Packs detection batches for one model: its transform (in training mode) and a fixed canvas."""

    def __init__(
        self,
        transform: GeneralizedRCNNTransform,
        *,
        canvas: tuple[int, int] | None = None,
        max_boxes: int | None = None,
    ):
        self.transform = copy.deepcopy(transform).train()
        self.canvas = tuple(canvas) if canvas is not None else canvas_size(transform)
        self.max_boxes = max_boxes

    def __call__(
        self, images: Sequence[Tensor], targets: Sequence[dict]
    ) -> tuple[PipelineInputs, PipelineLabels]:
        """`((images, geometry), (boxes, labels, counts))` for one batch."""
        if len(images) != len(targets) or not images:
            raise DsdetError(
                f"a batch needs at least one image and one target per image "
                f"(got {len(images)} images and {len(targets)} targets)"
            )
        plain = _plain_targets(targets)
        image_list, resized = self.transform(
            [torch.as_tensor(img).as_subclass(Tensor) for img in images], plain
        )
        for index, target in enumerate(resized):
            degenerate = (target["boxes"][:, 2:] <= target["boxes"][:, :2]).any(dim=1)
            if degenerate.any():
                bad = [round(v, 2) for v in plain[index]["boxes"][degenerate][0].tolist()]
                raise DsdetError(
                    f"{_sample_name(index, targets[index])}: box {bad} has no positive width and height"
                )
        return (self._pad_images(image_list, targets), self._pad_targets(resized, targets))

    def _pad_images(self, image_list: ImageList, targets: Sequence[dict]) -> PipelineInputs:
        height, width = self.canvas
        tensors = image_list.tensors
        if tensors.shape[-2] > height or tensors.shape[-1] > width:
            index = max(range(len(targets)), key=lambda i: max(image_list.image_sizes[i]))
            raise DsdetError(
                f"{_sample_name(index, targets[index])}: resized to {tuple(image_list.image_sizes[index])}, "
                f"larger than the pipeline canvas {self.canvas}"
            )
        canvas = tensors.new_zeros((tensors.shape[0], tensors.shape[1], height, width))
        canvas[..., : tensors.shape[-2], : tensors.shape[-1]].copy_(tensors)
        geometry = torch.tensor([[h, w, height, width] for h, w in image_list.image_sizes], dtype=torch.int64)
        return canvas, geometry

    def _pad_targets(self, resized: Sequence[dict[str, Tensor]], targets: Sequence[dict]) -> PipelineLabels:
        counts = torch.tensor([len(t["labels"]) for t in resized], dtype=torch.int64)
        most = int(counts.max())
        if self.max_boxes is not None and most > self.max_boxes:
            index = int(counts.argmax())
            raise DsdetError(
                f"{_sample_name(index, targets[index])}: {most} boxes, more than max_boxes={self.max_boxes}"
            )
        width = self.max_boxes if self.max_boxes is not None else most
        boxes = torch.zeros((len(resized), width, 4), dtype=torch.float32)
        labels = torch.zeros((len(resized), width), dtype=torch.int64)
        for row, target in enumerate(resized):
            boxes[row, : len(target["boxes"])] = target["boxes"]
            labels[row, : len(target["labels"])] = target["labels"]
        return boxes, labels, counts


def unpack_targets(boxes: Tensor, labels: Tensor, counts: Tensor) -> list[dict[str, Tensor]]:
    """The per-image target dicts (boxes, labels) of a packed batch."""
    return [
        {"boxes": b[:n], "labels": lab[:n]} for b, lab, n in zip(boxes, labels, counts.tolist(), strict=True)
    ]


def image_list(canvas: Tensor, geometry: Tensor) -> ImageList:
    """An ImageList over `canvas` (any tensor shaped [B, C, H, W]) with the resized sizes of `geometry`."""
    return ImageList(canvas, [(int(h), int(w)) for h, w in geometry[:, :2].tolist()])


def unpack_batch(inputs: PipelineInputs, labels: PipelineLabels) -> tuple[ImageList, list[dict[str, Tensor]]]:
    """The inverse of packing: what the model's transform returned (ImageList, resized targets)."""
    images, geometry = inputs
    return image_list(images, geometry), unpack_targets(*labels)


class PackedBatches:
    """Iterates `(images, targets)` batches as packed `(inputs, labels)` pairs, for `engine.train_batch`."""

    def __init__(self, batches: Iterable[tuple[Sequence[Tensor], Sequence[dict]]], packer: Packer):
        self.batches = batches
        self.packer = packer

    def __iter__(self) -> Iterator[tuple[PipelineInputs, PipelineLabels]]:
        for images, targets in self.batches:
            yield self.packer(images, targets)
