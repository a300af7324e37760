"""`build_transforms`: the `data.augment` spec table of docs/CONTRACTS.md as a torchvision.transforms.v2 pipeline."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torchvision import tv_tensors
from torchvision.transforms import v2

from dsdet.errors import DsdetError

REQUIRED = object()
BILINEAR = v2.InterpolationMode.BILINEAR


def _zoom_out(fill: float, side_range: Sequence[float], p: float) -> v2.Transform:
    """RandomZoomOut; `fill` is in image units, [0, 1]."""
    if not 0 <= fill <= 1:
        raise ValueError(f"fill {fill} must be in [0, 1] (images are float in [0, 1])")
    return v2.RandomZoomOut(fill=fill, side_range=tuple(side_range), p=p)


class ExpandingRotation(v2.RandomRotation):
    """RandomRotation(expand=True) on (image, target); an empty box set also gets the grown canvas."""

    def __init__(self, degrees: float | Sequence[float]) -> None:
        super().__init__(degrees, interpolation=BILINEAR, expand=True)

    def forward(self, image: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        image, target = super().forward(image, target)
        boxes = target["boxes"]
        if boxes.numel() == 0:  # torchvision keeps the old canvas_size for no boxes, which later steps reject
            target["boxes"] = tv_tensors.wrap(boxes, like=boxes, canvas_size=tuple(image.shape[-2:]))
        return image, target


# name -> (parameters with their defaults, builder taking those parameters)
AUGMENTATIONS: dict[str, tuple[dict[str, Any], Callable[..., v2.Transform]]] = {
    "hflip": ({"p": 0.5}, lambda p: v2.RandomHorizontalFlip(p)),
    "vflip": ({"p": 0.5}, lambda p: v2.RandomVerticalFlip(p)),
    "brightness": ({"factor": 0.2}, lambda factor: v2.ColorJitter(brightness=factor)),
    "contrast": ({"factor": 0.2}, lambda factor: v2.ColorJitter(contrast=factor)),
    # degrees: a float d (uniform in [-d, d]) or [low, high]; the canvas grows so that no corner is lost.
    "rotation": ({"degrees": 10.0}, ExpandingRotation),
    # target_size is [H, W]; torchvision's ScaleJitter reads its target_size as (W, H).
    "scale_jitter": (
        {"target_size": REQUIRED, "scale_range": (0.1, 2.0)},
        lambda target_size, scale_range: v2.ScaleJitter((target_size[1], target_size[0]), tuple(scale_range)),
    ),
    "resize": (
        {"size": REQUIRED, "max_size": None},
        lambda size, max_size: v2.Resize(size, max_size=max_size),
    ),
    "photometric": ({"p": 0.5}, lambda p: v2.RandomPhotometricDistort(p=p)),
    "zoom_out": ({"fill": 0.0, "side_range": (1.0, 4.0), "p": 0.5}, _zoom_out),
    "ssd_crop": ({}, lambda: v2.RandomIoUCrop()),
}
EVAL_AUGMENTATIONS = ("resize",)


def sanitized_fields(sample: Any) -> tuple:
    """What SanitizeBoundingBoxes filters along with the boxes (masks it finds itself)."""
    target = sample[1]
    return tuple(target[key] for key in ("labels", "iscrowd", "area") if key in target)


def build_augmentation(item: Mapping[str, Any], index: int) -> v2.Transform:
    """One transform from a spec item like {"name": "hflip", "p": 0.5}."""
    name = item.get("name") if isinstance(item, Mapping) else None
    if name not in AUGMENTATIONS:
        raise DsdetError(
            f"augment[{index}]: unknown augmentation {name!r}; known: {', '.join(AUGMENTATIONS)}"
        )
    defaults, builder = AUGMENTATIONS[name]
    unknown = sorted(set(item) - set(defaults) - {"name"})
    if unknown:
        raise DsdetError(
            f"augment[{index}] ({name}): unknown parameters {unknown}; known: {sorted(defaults) or 'none'}"
        )
    params = {key: item.get(key, default) for key, default in defaults.items()}
    missing = [key for key, value in params.items() if value is REQUIRED]
    if missing:
        raise DsdetError(f"augment[{index}] ({name}): missing parameters {missing}")
    try:
        return builder(**params)
    except (TypeError, ValueError) as exc:
        raise DsdetError(f"augment[{index}] ({name}): {exc}") from None


def build_transforms(augment: Sequence[Mapping[str, Any]], train: bool) -> v2.Compose:
    """The augment items in order (only `resize` when not training), then ClampBoundingBoxes + SanitizeBoundingBoxes."""
    steps = [
        build_augmentation(item, index)
        for index, item in enumerate(augment)
        if train or (isinstance(item, Mapping) and item.get("name") in EVAL_AUGMENTATIONS)
    ]
    return v2.Compose(
        [*steps, v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(labels_getter=sanitized_fields)]
    )
