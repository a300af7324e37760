"""dsdet's configuration: the experiment and DeepSpeed models, loading, resolution of "auto", presets, memory."""

from dsdet.config.deepspeed import DeepSpeedConfig
from dsdet.config.experiment import (
    DataSection,
    EvalSection,
    ExperimentConfig,
    ModelSection,
    TrainSection,
    default_data_root,
    experiment_hash,
)
from dsdet.config.generate import generate_deepspeed_config
from dsdet.config.loading import load_config_file, load_deepspeed_config, load_experiment
from dsdet.config.memory import MemoryEstimate, estimate_for_config, estimate_memory
from dsdet.config.presets import PRESETS, Preset
from dsdet.config.problems import ConfigError
from dsdet.config.resolve import (
    bucket_sizes,
    fill_from_experiment,
    for_device,
    resolve_deepspeed_config,
    total_training_steps,
    warmup_steps,
)

__all__ = [
    "PRESETS",
    "ConfigError",
    "DataSection",
    "DeepSpeedConfig",
    "EvalSection",
    "ExperimentConfig",
    "MemoryEstimate",
    "ModelSection",
    "Preset",
    "TrainSection",
    "bucket_sizes",
    "default_data_root",
    "estimate_for_config",
    "estimate_memory",
    "experiment_hash",
    "fill_from_experiment",
    "for_device",
    "generate_deepspeed_config",
    "load_config_file",
    "load_deepspeed_config",
    "load_experiment",
    "resolve_deepspeed_config",
    "total_training_steps",
    "warmup_steps",
]
