"""`build_model`: one entry point that builds any registered detector from scratch or from local weights."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from dsdet.errors import DsdetError
from dsdet.models.memory_format import use_channels_last
from dsdet.models.norm import NORMS, convert_norm
from dsdet.models.registry import check_kwargs, model_info
from dsdet.models.roi_align import use_sparse_roi_align
from dsdet.models.weights import load_weights
from dsdet.models.whole_tensors import WholeTensors, already_whole


@dataclass(frozen=True)
class ModelSpec:
    """Which detector to build and how: `construct()` only runs the registered builder, `finish()` then loads
    weights, sets the norm layers, the RoIAlign kernel and channels-last inputs. Calling the spec does both.

    The engine may run `construct()` under `deepspeed.zero.Init` (parameters partitioned as they are made) and
    pass `finish()` a `WholeTensors` that gathers them where a step reads or writes values."""

    name: str
    num_classes: int
    weights: str | Path | None = None
    norm: str = "batchnorm"
    channels_last: bool = False
    roi_align: str = "torchvision"
    kwargs: dict[str, Any] = field(default_factory=dict)

    def construct(self) -> nn.Module:
        """The registered builder's model, nothing else; every argument checked first."""
        info = model_info(self.name)
        num_classes = self.num_classes
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise DsdetError(
                f"model.num_classes: must be an integer >= 2 (classes + background), got {num_classes!r}"
            )
        check_kwargs(info, self.kwargs)
        if self.norm not in NORMS:
            raise DsdetError(f"model.norm: unknown norm {self.norm!r}; choose one of {', '.join(NORMS)}")
        if self.roi_align not in ("sparse", "torchvision"):
            raise DsdetError(
                f"train.cpu.roi_align: must be 'sparse' or 'torchvision', got {self.roi_align!r}"
            )
        try:
            return info.builder(num_classes, **self.kwargs)
        except (TypeError, ValueError) as exc:
            raise DsdetError(f"model.kwargs: cannot build {self.name} with {self.kwargs}: {exc}") from exc

    def finish(self, model: nn.Module, whole: WholeTensors = already_whole) -> nn.Module:
        """`model` with the weights, norm layers, RoIAlign kernel and memory format of this spec."""
        if self.weights is not None:
            load_weights(model, self.weights, whole)
        model = convert_norm(model, self.norm, whole)
        if self.roi_align == "sparse":
            use_sparse_roi_align(model)
        return use_channels_last(model) if self.channels_last else model

    def __call__(self) -> nn.Module:
        return self.finish(self.construct())


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
    return ModelSpec(name, num_classes, weights, norm, channels_last, roi_align, kwargs)()
