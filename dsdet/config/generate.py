"""Compose a DeepSpeed config from dsdet's base, named presets and a few explicit choices."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Literal

from dsdet.config.deepspeed import DeepSpeedConfig
from dsdet.config.ds_builders import zero_tested_optimizer
from dsdet.config.presets import (
    BASE_DEEPSPEED,
    OPTIMIZER_TEMPLATES,
    SCHEDULER_TEMPLATES,
    overlay,
    preset,
    typed_template,
)
from dsdet.config.problems import did_you_mean, validate_model
from dsdet.errors import DsdetError

Device = Literal["cpu", "nvme"]


def generate_deepspeed_config(
    presets: Sequence[str] = (),
    *,
    zero_stage: int | None = None,
    offload_optimizer: Device | None = None,
    offload_param: Device | None = None,
    nvme_path: str | None = None,
    precision: Literal["fp16", "bf16"] | None = None,
    activation_checkpointing: bool = False,
    optimizer: str | None = None,
    scheduler: str | None = None,
    lr: float | None = None,
    micro_batch: int | None = None,
    grad_accum: int | None = None,
) -> DeepSpeedConfig:
    """dsdet's 'auto' base with the presets laid over it in order, then each explicit choice; validated.

    Choosing an optimizer ZeRO has not tested (Lamb, SGD) under ZeRO also sets zero_allow_untested_optimizer,
    which DeepSpeed requires."""
    data = copy.deepcopy(BASE_DEEPSPEED)
    names = [
        *presets,
        *(["activation_checkpointing"] if activation_checkpointing else []),
        *([precision] if precision else []),
    ]
    for name in names:
        data = overlay(data, preset(name).config)
    if optimizer is not None:
        data["optimizer"] = _template("optimizer", optimizer, OPTIMIZER_TEMPLATES)
    if scheduler is not None:
        data["scheduler"] = _template("scheduler", scheduler, SCHEDULER_TEMPLATES)
    if lr is not None and "optimizer" not in data:
        raise DsdetError(
            "--lr sets the lr of an optimizer DeepSpeed builds: add --optimizer (without one, dsdet builds "
            "train.optimizer at train.lr)"
        )
    data = overlay(
        data,
        _explicit_choices(
            zero_stage, offload_optimizer, offload_param, nvme_path, lr, micro_batch, grad_accum
        ),
    )
    chosen = str(data.get("optimizer", {}).get("type", ""))
    if (
        chosen
        and not zero_tested_optimizer(chosen)
        and data.get("zero_optimization", {}).get("stage", 0) >= 1
    ):
        data["zero_allow_untested_optimizer"] = True
    return validate_model(DeepSpeedConfig, data, "generated config")


def _explicit_choices(
    zero_stage: int | None,
    offload_optimizer: Device | None,
    offload_param: Device | None,
    nvme_path: str | None,
    lr: float | None,
    micro_batch: int | None,
    grad_accum: int | None,
) -> dict[str, Any]:
    if nvme_path is not None and "nvme" not in (offload_optimizer, offload_param):
        raise DsdetError("--nvme-path needs --offload-optimizer nvme or --offload-param nvme")
    zero: dict[str, Any] = {} if zero_stage is None else {"stage": zero_stage}
    for key, device in (("offload_optimizer", offload_optimizer), ("offload_param", offload_param)):
        if device is not None:
            zero[key] = {
                "device": device,
                "pin_memory": True,
                **({"nvme_path": nvme_path} if device == "nvme" else {}),
            }
    choices: dict[str, Any] = {"zero_optimization": zero} if zero else {}
    if lr is not None:
        choices["optimizer"] = {"params": {"lr": lr}}
    if micro_batch is not None:
        choices["train_micro_batch_size_per_gpu"] = micro_batch
    if grad_accum is not None:
        choices["gradient_accumulation_steps"] = grad_accum
    return choices


def _template(section: str, name: str, templates: dict[str, Any]) -> dict[str, Any]:
    template = typed_template(section, name)
    if template is None:
        raise DsdetError(
            f"unknown {section} '{name}'{did_you_mean(name, list(templates))} (one of {', '.join(templates)})"
        )
    return template
