"""Named partial DeepSpeed configs, the 'auto' base they extend, and the one way to lay configs over each other."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from dsdet.config.problems import did_you_mean
from dsdet.errors import DsdetError


@dataclass(frozen=True)
class Preset:
    """A readable name for a partial DeepSpeed config."""

    name: str
    description: str
    config: dict[str, Any]


OPTIMIZER_TEMPLATES: dict[str, dict[str, Any]] = {
    "Adam": {
        "type": "Adam",
        "params": {"lr": "auto", "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": "auto"},
    },
    "AdamW": {
        "type": "AdamW",
        "params": {"lr": "auto", "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": "auto"},
    },
    "Lamb": {"type": "Lamb", "params": {"lr": "auto", "weight_decay": "auto"}},
    "SGD": {"type": "SGD", "params": {"lr": "auto", "momentum": 0.9, "weight_decay": "auto"}},
}
SCHEDULER_TEMPLATES: dict[str, dict[str, Any]] = {
    "WarmupLR": {
        "type": "WarmupLR",
        "params": {"warmup_min_lr": 0.0, "warmup_max_lr": "auto", "warmup_num_steps": "auto"},
    },
    "WarmupDecayLR": {
        "type": "WarmupDecayLR",
        "params": {
            "warmup_min_lr": 0.0,
            "warmup_max_lr": "auto",
            "warmup_num_steps": "auto",
            "total_num_steps": "auto",
        },
    },
    "WarmupCosineLR": {
        "type": "WarmupCosineLR",
        "params": {"warmup_num_steps": "auto", "total_num_steps": "auto"},
    },
    "OneCycle": {
        "type": "OneCycle",
        "params": {
            "cycle_min_lr": 0,
            "cycle_max_lr": "auto",
            "cycle_first_step_size": "auto",
            "cycle_momentum": False,
        },
    },
    "LRRangeTest": {"type": "LRRangeTest", "params": {"lr_range_test_min_lr": "auto"}},
}
_TEMPLATES = {"optimizer": OPTIMIZER_TEMPLATES, "scheduler": SCHEDULER_TEMPLATES}

# What `dsdet config generate` starts from and what an experiment's `deepspeed` section is laid over:
# every value the experiment determines is "auto". It names no optimizer or scheduler: dsdet builds them from
# train.optimizer and train.schedule, with parameter groups, and hands them to deepspeed.initialize.
BASE_DEEPSPEED: dict[str, Any] = {
    "train_batch_size": "auto",
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "zero_optimization": {"stage": 2},
    "bf16": {"enabled": "auto"},
    "fp16": {"enabled": "auto"},
    "torch_autocast": {"enabled": "auto", "dtype": "auto"},
    "gradient_clipping": "auto",
    "steps_per_print": 1_000_000,
}

_ZERO2 = {
    "stage": 2,
    "overlap_comm": True,
    "contiguous_gradients": True,
    "reduce_scatter": True,
    "allgather_partitions": True,
    "reduce_bucket_size": "auto",
    "allgather_bucket_size": "auto",
}
_ZERO3 = {
    "stage": 3,
    "overlap_comm": True,
    "contiguous_gradients": True,
    "reduce_bucket_size": "auto",
    "stage3_prefetch_bucket_size": "auto",
    "stage3_param_persistence_threshold": "auto",
    "stage3_max_live_parameters": 1_000_000_000,
    "stage3_max_reuse_distance": 1_000_000_000,
    "stage3_gather_16bit_weights_on_model_save": True,
    "sub_group_size": 1_000_000_000,
}
_CPU_OFFLOAD = {"device": "cpu", "pin_memory": True}
# The deepspeed_config.json of the DeepSpeed notes dsdet was created from (shared/seeds/003), value for value.
SEED_EXAMPLE: dict[str, Any] = {
    "train_micro_batch_size_per_gpu": 1,
    "gradient_accumulation_steps": 1,
    "optimizer": {
        "type": "Adam",
        "params": {"lr": 0.001, "betas": [0.8, 0.999], "eps": 1e-08, "weight_decay": 3e-07},
    },
    "scheduler": {
        "type": "WarmupLR",
        "params": {"warmup_min_lr": 0, "warmup_max_lr": 0.001, "warmup_num_steps": 1000},
    },
    "activation_checkpointing": {
        "partition_activations": True,
        "cpu_checkpointing": True,
        "contiguous_memory_optimization": False,
        "number_checkpoints": None,
        "synchronize_checkpoint_boundary": False,
        "profile": True,
    },
    "fp16": {
        "enabled": True,
        "auto_cast": False,
        "loss_scale": 0,
        "initial_scale_power": 16,
        "loss_scale_window": 1000,
        "hysteresis": 2,
        "consecutive_hysteresis": False,
        "min_loss_scale": 1,
    },
    "zero_optimization": {
        "stage": 3,
        "offload_param": {"device": "cpu", "pin_memory": True},
        "offload_optimizer": {"device": "cpu", "pin_memory": True},
        "contiguous_gradients": True,
        "overlap_comm": True,
    },
}

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "zero0", "plain data parallel: every rank holds everything", {"zero_optimization": {"stage": 0}}
        ),
        Preset("zero1", "ZeRO-1: partition optimizer states", {"zero_optimization": {"stage": 1}}),
        Preset("zero2", "ZeRO-2: partition optimizer states and gradients", {"zero_optimization": _ZERO2}),
        Preset(
            "zero2_offload",
            "ZeRO-2 with optimizer states and step on the CPU",
            {"zero_optimization": {**_ZERO2, "offload_optimizer": _CPU_OFFLOAD}},
        ),
        Preset(
            "zero3",
            "ZeRO-3: partition optimizer states, gradients and parameters",
            {"zero_optimization": _ZERO3},
        ),
        Preset(
            "zero3_offload",
            "ZeRO-3 with optimizer states and parameters on the CPU",
            {
                "zero_optimization": {
                    **_ZERO3,
                    "offload_optimizer": _CPU_OFFLOAD,
                    "offload_param": _CPU_OFFLOAD,
                }
            },
        ),
        Preset(
            "bf16",
            "bfloat16 autocast with fp32 master weights",
            {
                "torch_autocast": {"enabled": True, "dtype": "bfloat16"},
                "bf16": {"enabled": False},
                "fp16": {"enabled": False},
            },
        ),
        Preset(
            "fp16",
            "fp16 mixed precision with dynamic loss scaling",
            {
                "fp16": {
                    "enabled": True,
                    "loss_scale": 0.0,
                    "initial_scale_power": 16,
                    "loss_scale_window": 1000,
                    "hysteresis": 2,
                    "min_loss_scale": 1,
                },
                "bf16": {"enabled": False},
            },
        ),
        Preset(
            "activation_checkpointing",
            "partitioned activation checkpoints for models that use deepspeed.checkpointing",
            {
                "activation_checkpointing": {
                    "partition_activations": True,
                    "cpu_checkpointing": False,
                    "contiguous_memory_optimization": False,
                    "number_checkpoints": None,
                    "synchronize_checkpoint_boundary": False,
                    "profile": False,
                }
            },
        ),
        Preset(
            "pipeline",
            "pipeline parallelism (ZeRO-1, stages from the PipelineModule)",
            {
                "pipeline": {
                    "stages": "auto",
                    "partition": "parameters",
                    "activation_checkpoint_interval": 0,
                },
                "zero_optimization": {"stage": 1},
            },
        ),
        Preset(
            "seed_example",
            "the deepspeed_config.json of the DeepSpeed notes (ZeRO-3 offload, fp16)",
            SEED_EXAMPLE,
        ),
    )
}


def preset(name: str) -> Preset:
    """The preset called `name`; DsdetError naming the choices otherwise."""
    if name not in PRESETS:
        raise DsdetError(
            f"unknown preset '{name}'{did_you_mean(name, list(PRESETS))} (one of {', '.join(PRESETS)})"
        )
    return PRESETS[name]


def typed_template(section: str, type_name: str) -> dict[str, Any] | None:
    """The 'auto' template of an optimizer or scheduler type (any letter case), or None when unknown."""
    templates = _TEMPLATES[section]
    match = next((t for name, t in templates.items() if name.lower() == type_name.lower()), None)
    return copy.deepcopy(match) if match is not None else None


def overlay(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """`patch` laid over `base` (nested dicts merge, other values replace); an optimizer or scheduler that
    `patch` introduces or whose `type` it changes starts from that type's template instead of the old params."""
    merged = copy.deepcopy(base)
    for key, value in patch.items():
        old = merged.get(key)
        if key in _TEMPLATES and _changes_type(old, value):
            old = typed_template(key, value["type"]) or {}
        merged[key] = (
            overlay(old, value) if isinstance(old, dict) and isinstance(value, dict) else copy.deepcopy(value)
        )
    return merged


def _changes_type(old: Any, new: Any) -> bool:
    if not (isinstance(new, dict) and isinstance(new.get("type"), str)):
        return False
    return not isinstance(old, dict) or str(old.get("type", "")).lower() != new["type"].lower()
