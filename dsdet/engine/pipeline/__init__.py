"""Pipeline-parallel forms of detectors for DeepSpeed's PipelineModule (see docs/pipeline.md)."""

from dsdet.engine.pipeline.build import DetectorLayers, DetectorPipeline, detector_layers, to_pipeline
from dsdet.engine.pipeline.packing import (
    PackedBatches,
    Packer,
    canvas_size,
    image_list,
    unpack_batch,
    unpack_targets,
)
from dsdet.engine.pipeline.state import gather_plain_state_dict, pipeline_state_dict, plain_state_dict

__all__ = [
    "DetectorLayers",
    "DetectorPipeline",
    "PackedBatches",
    "Packer",
    "canvas_size",
    "detector_layers",
    "gather_plain_state_dict",
    "image_list",
    "pipeline_state_dict",
    "plain_state_dict",
    "to_pipeline",
    "unpack_batch",
    "unpack_targets",
]
