"""Plain (torchvision) state dicts <-> pipeline layers' state dicts, and gathering a pipelined model's weights.

Each pipeline layer keeps its modules under their plain dotted names, so a layer's state dict keys are plain
keys: the PipelineModule's key for plain key `k` owned by layer `i` is `f"{i}.{k}"`, and DeepSpeed's
checkpoint file `layer_{i:02d}-model_states.pt` holds exactly the plain keys layer `i` owns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from deepspeed.pipe import PipelineModule
from torch import Tensor, nn

from dsdet.comm import all_gather_object
from dsdet.engine.deepspeed_internals import PIPELINE_LAYER_GLOB
from dsdet.engine.pipeline.build import DetectorPipeline
from dsdet.errors import DsdetError

LayerStates = dict[int, dict[str, Tensor]]


def pipeline_state_dict(
    layer_keys: Sequence[Sequence[str]], plain_state: Mapping[str, Tensor]
) -> LayerStates:
    """Split a plain state dict by pipeline layer (`layer_keys` of DetectorLayers or DetectorPipeline)."""
    owned = {key for keys in layer_keys for key in keys}
    unexpected = [key for key in plain_state if key not in owned]
    missing = [key for key in owned if key not in plain_state]
    if unexpected or missing:
        raise DsdetError(
            f"state dict does not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    return {index: {key: plain_state[key] for key in keys} for index, keys in enumerate(layer_keys)}


def _merge(states: Sequence[Mapping[str, Tensor]], where: str) -> dict[str, Tensor]:
    merged: dict[str, Tensor] = {}
    for state in states:
        for key, value in state.items():
            if key in merged:
                raise DsdetError(f"{where}: weight {key} appears in two pipeline layers")
            merged[key] = value
    return merged


def _layer_files(checkpoint: Path) -> list[Path]:
    """The layer files of a pipeline checkpoint: `checkpoint` itself, or the tag its `latest` file names."""
    if not any(checkpoint.glob(PIPELINE_LAYER_GLOB)) and (checkpoint / "latest").is_file():
        checkpoint = checkpoint / (checkpoint / "latest").read_text().strip()
    files = sorted(checkpoint.glob(PIPELINE_LAYER_GLOB))
    if not files:
        raise DsdetError(
            f"{checkpoint} holds no pipeline layer files ({PIPELINE_LAYER_GLOB}): not a pipeline checkpoint"
        )
    return files


def plain_state_dict(
    source: PipelineModule | str | Path | Mapping[int, Mapping[str, Tensor]],
) -> dict[str, Tensor]:
    """Plain keys from: this rank's pipeline layers, a pipeline checkpoint directory, or per-layer state dicts."""
    if isinstance(source, PipelineModule):
        layers = [f for f in source.forward_funcs if isinstance(f, nn.Module)]
        return _merge([layer.state_dict() for layer in layers], "pipeline layers")
    if isinstance(source, (str, Path)):
        files = _layer_files(Path(source))
        return _merge([torch.load(f, map_location="cpu", weights_only=True) for f in files], str(source))
    return _merge([source[index] for index in sorted(source)], "layer state dicts")


def gather_plain_state_dict(pipeline: DetectorPipeline) -> dict[str, Tensor]:
    """The full plain state dict (CPU copies, plain key order), the same on every rank: data-parallel replica 0's.

    Replicas share parameters but not BatchNorm running statistics; replica 0's are those DeepSpeed checkpoints.
    """
    local = None
    if pipeline.mpu().get_data_parallel_rank() == 0:
        local = {
            key: value.detach().to("cpu", copy=True) for key, value in plain_state_dict(pipeline).items()
        }
    gathered = all_gather_object(local)
    merged = _merge([state for state in gathered if state is not None], "gathered pipeline stages")
    missing = [key for key in pipeline.plain_keys if key not in merged]
    if missing:
        raise DsdetError(f"gathered pipeline stages miss weights, e.g. {missing[:3]}")
    return {key: merged[key] for key in pipeline.plain_keys}
