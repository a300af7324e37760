"""`to_pipeline`: a plain detector as a DeepSpeed PipelineModule sharing its weights."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from deepspeed import comm as dist
from deepspeed.pipe import PipelineModule
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.ssd import SSD

from dsdet.engine.pipeline.boundary import fold, unfold
from dsdet.engine.pipeline.parts import ChainStep, FeaturePyramidStep, WholeBackbone
from dsdet.engine.pipeline.rcnn import rcnn_layers
from dsdet.engine.pipeline.ssd import ssd_layers
from dsdet.errors import DsdetError

# Layer kinds activation checkpointing may wrap: backbone and FPN steps, never the heads (which pass tensors through
# or hand anchors to the loss).
CHECKPOINTABLE = [ChainStep.__name__, WholeBackbone.__name__, FeaturePyramidStep.__name__]
PIPELINE_FORMS: dict[type, Callable[[nn.Module], list[nn.Module]]] = {
    SSD: ssd_layers,
    FasterRCNN: rcnn_layers,
}


@dataclass
class DetectorLayers:
    """A plain detector as a sequence of layers sharing its weights; the last layer's `loss` is the pipeline loss."""

    layers: list[nn.Module]
    plain_keys: list[str]
    layer_keys: list[list[str]] = field(init=False)

    def __post_init__(self):
        self.layer_keys = [list(layer.state_dict().keys()) for layer in self.layers]

    @property
    def head(self) -> nn.Module:
        """The last layer: the detector's heads, with the pipeline's `loss`."""
        return self.layers[-1]


def _check_ownership(model: nn.Module, layers: list[nn.Module]) -> None:
    """Every plain weight belongs to exactly one layer (the key maps rely on it)."""
    owner: dict[int, int] = {}
    for index, layer in enumerate(layers):
        for tensor in layer.state_dict(keep_vars=True).values():
            if owner.setdefault(id(tensor), index) != index:
                raise DsdetError(
                    f"{type(model).__name__}: a tensor is shared by pipeline layers {owner[id(tensor)]} and {index}"
                )
    missing = [key for key, tensor in model.state_dict(keep_vars=True).items() if id(tensor) not in owner]
    if missing:
        raise DsdetError(f"{type(model).__name__} has weights outside its pipeline form, e.g. {missing[:3]}")


def detector_layers(model: nn.Module) -> DetectorLayers:
    """The pipeline layers of `model` (no DeepSpeed needed); DsdetError for models without a pipeline form."""
    for kind, build in PIPELINE_FORMS.items():
        if isinstance(model, kind):
            layers = build(model)
            _check_ownership(model, layers)
            return DetectorLayers(layers, list(model.state_dict().keys()))
    supported = ", ".join(kind.__name__ for kind in PIPELINE_FORMS)
    raise DsdetError(
        f"{type(model).__name__} has no pipeline form (pipeline parallelism supports {supported})"
    )


class DetectorPipeline(PipelineModule):
    """DeepSpeed's PipelineModule over a detector's layers; stages exchange `boundary.fold`ed carries."""

    def __init__(self, detector: DetectorLayers, **kwargs):
        super().__init__(
            detector.layers, loss_fn=detector.head.loss, checkpointable_layers=list(CHECKPOINTABLE), **kwargs
        )
        self.detector = detector  # a plain object, not a submodule: each rank registers only its own layers

    @property
    def layer_keys(self) -> list[list[str]]:
        """Per layer (all stages), the plain state dict keys it owns."""
        return self.detector.layer_keys

    @property
    def plain_keys(self) -> list[str]:
        """The plain model's state dict keys, in its order."""
        return self.detector.plain_keys

    def forward(self, forward_input):
        if self.stage_id > 0:
            forward_input = unfold(forward_input)
        outputs = super().forward(forward_input)
        return fold(outputs) if self.stage_id < self.num_stages - 1 else outputs

    def get_additional_losses(self) -> dict[str, Tensor]:
        """The loss terms of the last micro-batch (zeros before the first, and on stages without the loss)."""
        head = self.detector.head
        return head.last_losses or {name: torch.zeros(()) for name in head.loss_names}


def _check_options(detector: DetectorLayers, num_stages: int, partition_method: str, interval: int) -> None:
    """Options first (no process group needed), then the world size."""
    num_layers = len(detector.layers)
    field = "deepspeed.pipeline"
    if isinstance(num_stages, bool) or not isinstance(num_stages, int) or not 1 <= num_stages <= num_layers:
        raise DsdetError(
            f"{field}.stages: must be an integer from 1 to {num_layers} (layers), got {num_stages!r}"
        )
    names = sorted({type(layer).__name__ for layer in detector.layers})
    if partition_method.startswith("type:"):
        if not any(re.search(partition_method[5:], name, re.IGNORECASE) for name in names):
            raise DsdetError(f"{field}.partition: {partition_method!r} matches no layer of {names}")
    elif partition_method not in ("parameters", "uniform"):
        raise DsdetError(
            f"{field}.partition: {partition_method!r} is not parameters, uniform or type:<regex>"
        )
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 0:
        raise DsdetError(f"{field}.activation_checkpoint_interval: must be an integer >= 0, got {interval!r}")
    if not dist.is_initialized():
        raise DsdetError(
            "pipeline parallelism needs torch.distributed: launch with deepspeed or dsdet launch"
        )
    if dist.get_world_size() % num_stages:
        raise DsdetError(f"{field}.stages: {num_stages} stages do not divide {dist.get_world_size()} ranks")


def to_pipeline(
    model: nn.Module,
    *,
    num_stages: int,
    partition_method: str = "parameters",
    activation_checkpoint_interval: int = 0,
) -> DetectorPipeline:
    """A PipelineModule over `model`'s own modules (same weights), split into `num_stages` stages."""
    detector = detector_layers(model)
    _check_options(detector, num_stages, partition_method, activation_checkpoint_interval)
    return DetectorPipeline(
        detector,
        num_stages=num_stages,
        partition_method=partition_method,
        activation_checkpoint_interval=activation_checkpoint_interval,
    )
