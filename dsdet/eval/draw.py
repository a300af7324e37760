"""Draw ground-truth and predicted boxes on an image, for TensorBoard and `dsdet predict`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torchvision.transforms.v2.functional import to_dtype
from torchvision.utils import draw_bounding_boxes

from dsdet.errors import DsdetError

GROUND_TRUTH_COLOUR = "lime"
PREDICTION_COLOUR = "red"
LINE_WIDTH = 2


def _class_name(label: int, class_names: Sequence[str]) -> str:
    """Name of contiguous label `label` (1..K), which is `class_names[label - 1]`."""
    if not 1 <= label <= len(class_names):
        raise DsdetError(f"label {label} has no name: class_names names labels 1..{len(class_names)}")
    return class_names[label - 1]


def _cpu(tensor: torch.Tensor) -> torch.Tensor:
    """A plain CPU tensor (no autograd, no tv_tensors subclass)."""
    return torch.as_tensor(tensor).detach().cpu().as_subclass(torch.Tensor)


def _draw(canvas: torch.Tensor, boxes: torch.Tensor, captions: list[str], colour: str) -> torch.Tensor:
    """`canvas` with `boxes` (XYXY) outlined in `colour` and captioned."""
    if len(boxes) == 0:
        return canvas
    return draw_bounding_boxes(canvas, boxes, labels=captions, colors=colour, width=LINE_WIDTH)


def draw_detections(
    image: torch.Tensor,
    prediction: Mapping | None,
    target: Mapping | None,
    class_names: Sequence[str],
    score_threshold: float = 0.3,
) -> torch.Tensor:
    """uint8 CHW copy of a float [0, 1] image with ground truth in lime and predictions >= threshold in red."""
    canvas = to_dtype(_cpu(image), torch.uint8, scale=True)
    if target is not None:
        captions = [_class_name(label, class_names) for label in _cpu(target["labels"]).tolist()]
        canvas = _draw(canvas, _cpu(target["boxes"]).float(), captions, GROUND_TRUTH_COLOUR)
    if prediction is not None:
        keep = _cpu(prediction["scores"]) >= score_threshold
        boxes = _cpu(prediction["boxes"]).float()[keep]
        labels = _cpu(prediction["labels"])[keep].tolist()
        scores = _cpu(prediction["scores"])[keep].tolist()
        captions = [
            f"{_class_name(label, class_names)} {score:.2f}"
            for label, score in zip(labels, scores, strict=True)
        ]
        canvas = _draw(canvas, boxes, captions, PREDICTION_COLOUR)
    return canvas
