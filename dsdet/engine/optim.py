"""Parameter groups, optimizer and learning-rate schedule, built by dsdet and handed to `deepspeed.initialize`.

A `deepspeed` section that names an optimizer or scheduler keeps it: DeepSpeed then builds that one (on dsdet's
parameter groups) and dsdet builds only what the section leaves out."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dsdet.config import TrainSection
from dsdet.config.optim import Cosine, MultiStep
from dsdet.models import ParamOverrides

# Parameters whose name ends in one of these are position embeddings or tokens: no weight decay (as torchvision's
# --transformer-embedding-decay and detectron2's ViT recipes).
EMBEDDING_NAMES = (
    "pos_embed",
    "position_embedding",
    "relative_position_bias_table",
    "class_token",
    "cls_token",
)
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def is_exempt_from_decay(module: nn.Module, name: str) -> bool:
    """True for normalization weights, biases and position embeddings (`name` is the parameter's own name)."""
    return isinstance(module, NORM_TYPES) or name == "bias" or name.endswith(EMBEDDING_NAMES)


def parameter_groups(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    exempt_weight_decay: float,
    overrides: ParamOverrides | None = None,
) -> list[dict[str, Any]]:
    """The trainable parameters of `model` in optimizer groups, one per distinct (lr, weight decay), so fused
    optimizers still step few large groups. Normalization weights, biases and position embeddings get
    `exempt_weight_decay`; `overrides(model, name)` may scale a parameter's lr (`lr_scale`) or set its `weight_decay`."""
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            decay = exempt_weight_decay if is_exempt_from_decay(module, name) else weight_decay
            full_name = f"{module_name}.{name}" if module_name else name
            rule = overrides(model, full_name) if overrides else {}
            key = (lr * rule.get("lr_scale", 1.0), rule.get("weight_decay", decay))
            groups.setdefault(key, []).append(param)
    return [{"params": params, "lr": lr_, "weight_decay": wd} for (lr_, wd), params in groups.items()]


def build_optimizer(
    train: TrainSection, groups: list[dict[str, Any]], *, offload: bool, device: str
) -> torch.optim.Optimizer:
    """The optimizer of `train.optimizer` over `groups`. AdamW offloaded on a GPU machine is DeepSpeed's CPU Adam
    (its vectorised kernel); on CPU ranks it stays torch's fused AdamW, which resumes bit-exactly
    (see config.resolve.for_device)."""
    options = train.optimizer
    if options.name == "sgd":
        return torch.optim.SGD(
            groups,
            lr=train.lr,
            momentum=options.momentum,
            nesterov=options.nesterov,
            weight_decay=train.weight_decay,
        )
    if offload and device != "cpu":
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(
            groups,
            lr=train.lr,
            betas=options.betas,
            eps=options.eps,
            weight_decay=train.weight_decay,
            adamw_mode=True,
        )
    return torch.optim.AdamW(
        groups, lr=train.lr, betas=options.betas, eps=options.eps, weight_decay=train.weight_decay, fused=True
    )


@dataclass(frozen=True)
class LearningRateFactor:
    """The schedule as a factor of each group's base rate after `step` optimizer steps: linear warm-up from
    `start_factor` over `warmup_steps`, then cosine decay to `final_ratio`, steps of `gamma` at
    `milestones`, or constant. A dataclass, so LambdaLR's state dict (and so a checkpoint) records it."""

    total_steps: int
    warmup_steps: int
    start_factor: float
    kind: str  # "cosine", "multistep" or "constant"
    final_ratio: float = 0.0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1

    def __call__(self, step: int) -> float:
        warm = 1.0
        if step < self.warmup_steps:
            warm = self.start_factor + (1.0 - self.start_factor) * step / self.warmup_steps
        if self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, max(0.0, (step - self.warmup_steps) / span))
            return warm * (
                self.final_ratio + (1.0 - self.final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
            )
        if self.kind == "multistep":
            return warm * self.gamma ** sum(step >= m for m in self.milestones)
        return warm


def learning_rate_factor(train: TrainSection, total_steps: int, warmup_steps: int) -> LearningRateFactor:
    """The `LearningRateFactor` of `train.schedule` for a run of `total_steps` optimizer steps."""
    schedule = train.schedule
    common = {
        "total_steps": total_steps,
        "warmup_steps": warmup_steps,
        "start_factor": schedule.warmup_start_factor,
    }
    if isinstance(schedule, Cosine):
        return LearningRateFactor(kind="cosine", final_ratio=schedule.final_lr_ratio, **common)
    if isinstance(schedule, MultiStep):
        milestones = tuple(round(m * total_steps) for m in schedule.milestones)
        return LearningRateFactor(kind="multistep", milestones=milestones, gamma=schedule.gamma, **common)
    return LearningRateFactor(kind="constant", **common)


@dataclass(frozen=True)
class OptimizerSetup:
    """What `deepspeed.initialize` gets besides the model: parameter groups, and builders of the optimizer and
    schedule (None where the DeepSpeed config names its own), plus the config keys dsdet sets knowingly."""

    groups: Callable[[nn.Module], list[dict[str, Any]]]
    optimizer: Callable[[list[dict[str, Any]]], torch.optim.Optimizer] | None
    scheduler: Callable[[torch.optim.Optimizer], Any] | None
    config_keys: dict[str, Any] = field(default_factory=dict)


def optimizer_setup(
    train: TrainSection,
    ds_config: dict[str, Any],
    *,
    total_steps: int,
    warmup_steps: int,
    device: str,
    overrides: ParamOverrides | None = None,
) -> OptimizerSetup:
    """How the run's optimizer and schedule are built on `device` under `ds_config`.

    dsdet's SGD is one DeepSpeed's ZeRO has not listed as tested: it updates each element from that element's
    gradient and momentum alone, so stepping a ZeRO partition is the same as stepping the whole tensor, and
    dsdet sets `zero_allow_untested_optimizer` for it (tests/test_engine_optim.py compares ZeRO-2 with ZeRO-0).
    Under optimizer offload, torch's SGD (DeepSpeed has no CPU SGD kernel) and, on CPU ranks, torch's AdamW step
    the offloaded fp32 copy, so dsdet sets `zero_force_ds_cpu_optimizer` false for them."""
    ds_builds_optimizer = bool(ds_config.get("optimizer"))
    ds_builds_scheduler = bool(ds_config.get("scheduler"))
    zero = ds_config.get("zero_optimization") or {}
    offload = (zero.get("offload_optimizer") or {}).get("device", "none") not in ("none", None)

    def groups(model: nn.Module) -> list[dict[str, Any]]:
        built = parameter_groups(
            model,
            lr=train.lr,
            weight_decay=train.weight_decay,
            exempt_weight_decay=train.optimizer.exempt_weight_decay,
            overrides=overrides,
        )
        if ds_builds_optimizer:  # the config's optimizer sets the rate; the groups keep their weight decay
            for group in built:
                group.pop("lr")
        return built

    config_keys: dict[str, Any] = {}
    optimizer = None
    if not ds_builds_optimizer:
        optimizer = functools.partial(build_optimizer, train, offload=offload, device=device)
        if train.optimizer.name == "sgd" and int(zero.get("stage", 0)) > 0:
            config_keys["zero_allow_untested_optimizer"] = True
        if offload and (train.optimizer.name == "sgd" or device == "cpu"):
            config_keys["zero_force_ds_cpu_optimizer"] = False
    scheduler = None
    if not ds_builds_scheduler:
        factor = learning_rate_factor(train, total_steps, warmup_steps)
        scheduler = functools.partial(torch.optim.lr_scheduler.LambdaLR, lr_lambda=factor)
    return OptimizerSetup(groups, optimizer, scheduler, config_keys)
