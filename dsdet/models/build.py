"""`build_model`: one entry point that builds any registered detector from scratch or from local weights."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from dsdet.errors import DsdetError
from dsdet.models.memory_format import use_channels_last
from dsdet.models.norm import convert_norm
from dsdet.models.registry import check_kwargs, model_info
from dsdet.models.roi_align import use_sparse_roi_align
from dsdet.models.weights import load_weights


def build_model(
    name: str,
    num_classes: int,
    *,
    weights: str | Path | None = None,
    norm: str = "batchnorm",
    channels_last: bool = False,
    roi_align: str = "torchvision",
    **kwargs,
) -> nn.Module:
    """Build detector `name` for `num_classes` (K + 1, background included), never downloading anything;
    `channels_last` runs its convolutions on NHWC inputs (`use_channels_last`), `roi_align="sparse"`
    trains RoIAlign on CPU as a sparse matrix product (`use_sparse_roi_align`)."""
    info = model_info(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise DsdetError(
            f"model.num_classes: must be an integer >= 2 (classes + background), got {num_classes!r}"
        )
    check_kwargs(info, kwargs)
    if roi_align not in ("sparse", "torchvision"):
        raise DsdetError(f"train.cpu.roi_align: must be 'sparse' or 'torchvision', got {roi_align!r}")
    try:
        model = info.builder(num_classes, **kwargs)
    except (TypeError, ValueError) as exc:
        raise DsdetError(f"model.kwargs: cannot build {name} with {kwargs}: {exc}") from exc
    if weights is not None:
        load_weights(model, weights)
    model = convert_norm(model, norm)
    if roi_align == "sparse":
        use_sparse_roi_align(model)
    return use_channels_last(model) if channels_last else model
