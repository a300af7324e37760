"""Fill the DeepSpeed section's "auto" values from the experiment, and report every disagreement at once."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dsdet.config.base import AUTO
from dsdet.config.deepspeed import DeepSpeedConfig
from dsdet.config.ds_builders import scheduler_parameters
from dsdet.config.experiment import ExperimentConfig
from dsdet.config.problems import ConfigError, show_value, validate_model
from dsdet.errors import DsdetError

# DeepSpeed's own bucket sizes, used when the parameter count is unknown.
_DEEPSPEED_BUCKETS = {
    "reduce_bucket_size": 500_000_000,
    "allgather_bucket_size": 500_000_000,
    "stage3_prefetch_bucket_size": 50_000_000,
    "stage3_param_persistence_threshold": 100_000,
}


@dataclass(frozen=True)
class _Target:
    """A value the experiment decides for one key of the DeepSpeed dict."""

    path: tuple[str, ...]
    value: Any
    source: str | None  # the experiment setting it comes from; None: a plain default that fills "auto" only


def total_training_steps(exp: ExperimentConfig, steps_per_epoch: int) -> int:
    """Optimizer steps of the run: epochs x ceil(steps_per_epoch / grad_accum_steps), capped by train.max_steps.

    `steps_per_epoch` counts micro batches per rank (the length of the training data loader)."""
    _require_positive("steps_per_epoch", steps_per_epoch)
    total = exp.train.epochs * math.ceil(steps_per_epoch / exp.train.grad_accum_steps)
    return min(total, exp.train.max_steps) if exp.train.max_steps is not None else total


def warmup_steps(exp: ExperimentConfig, total_steps: int) -> int:
    """Warm-up optimizer steps: ceil(train.warmup_ratio x total_steps), at least 1 (DeepSpeed needs one)."""
    return max(1, math.ceil(exp.train.warmup_ratio * total_steps))


# DeepSpeed asserts bucket sizes are multiples of its alignment (2 elements in ZeRO-1/2); round to 4096.
_BUCKET_ALIGNMENT = 4096


def bucket_sizes(num_parameters: int | None) -> dict[str, int]:
    """ZeRO bucket sizes in elements for a model with `num_parameters` trainable parameters.

    Detectors have no transformer hidden size, so the sizes follow the parameter count P: gradients are
    reduced and gathered in about four buckets (P/4 rounded up to 4096, between 2**20 and DeepSpeed's 5e8) so communication
    overlaps the backward pass without becoming latency-bound; ZeRO-3 prefetches one bucket ahead; tensors
    below 10*sqrt(P) elements (biases, norms, small heads) stay whole instead of being partitioned.
    Unknown P gives DeepSpeed's own defaults."""
    if num_parameters is None:
        return dict(_DEEPSPEED_BUCKETS)
    _require_positive("num_parameters", num_parameters)
    quarter = -(-math.ceil(num_parameters / 4) // _BUCKET_ALIGNMENT) * _BUCKET_ALIGNMENT
    bucket = min(500_000_000, max(2**20, quarter))
    return {
        "reduce_bucket_size": bucket,
        "allgather_bucket_size": bucket,
        "stage3_prefetch_bucket_size": bucket,
        "stage3_param_persistence_threshold": 10 * math.isqrt(num_parameters),
    }


def resolve_deepspeed_config(
    exp: ExperimentConfig,
    *,
    world_size: int,
    steps_per_epoch: int,
    num_parameters: int | None,
    must_match: bool = True,
) -> dict[str, Any]:
    """The DeepSpeed dict of `exp` for `world_size` ranks, every "auto" filled (see fill_from_experiment);
    DsdetError listing every conflict, unresolved value or broken batch identity."""
    config = fill_from_experiment(
        exp,
        world_size=world_size,
        steps_per_epoch=steps_per_epoch,
        num_parameters=num_parameters,
        must_match=must_match,
    )
    config.batch_sizes(world_size)
    return config.to_deepspeed_dict()


def fill_from_experiment(
    exp: ExperimentConfig,
    *,
    world_size: int | None = None,
    steps_per_epoch: int | None = None,
    num_parameters: int | None = None,
    must_match: bool = True,
) -> DeepSpeedConfig:
    """exp.deepspeed with "auto" filled from the experiment: micro batch <- train.batch_size, accumulation <-
    train.grad_accum_steps, train_batch_size <- micro x accumulation x world_size, lr and warmup_max_lr <- train.lr,
    weight_decay <- train.weight_decay, warmup_num_steps <- warmup_steps(), total_num_steps <-
    total_training_steps(), gradient_clipping <- train.gradient_clipping, fp16/torch_autocast enabled <- train.precision (bf16 is
    autocast with fp32 weights, so bf16.enabled <- false),
    bucket sizes <- bucket_sizes(num_parameters), also where the experiment leaves them unset. Values needing an unknown world size or step count stay "auto".

    With must_match, a key the experiment decides that is missing is filled too, and an explicit value that
    disagrees is a conflict (all reported together); without it, only "auto" is filled and explicit values win."""
    for name, value in (("world_size", world_size), ("steps_per_epoch", steps_per_epoch)):
        if value is not None:
            _require_positive(name, value)
    data = exp.deepspeed.to_deepspeed_dict(allow_auto=True)
    _unset_buckets_are_auto(data)
    conflicts = _fill(
        data, _experiment_targets(exp, exp.deepspeed, steps_per_epoch, num_parameters), must_match
    )
    micro, accum = data.get("train_micro_batch_size_per_gpu"), data.get("gradient_accumulation_steps")
    if world_size is not None and isinstance(micro, int) and isinstance(accum, int):
        batch = _Target(
            ("train_batch_size",),
            micro * accum * world_size,
            f"batch size {micro} x {accum} x world size {world_size}",
        )
        conflicts += _fill(data, [batch], must_match)
    if conflicts:
        raise ConfigError("the deepspeed section disagrees with the experiment", conflicts)
    return validate_model(
        DeepSpeedConfig, data, "the experiment's resolved deepspeed section", at="deepspeed"
    )


def for_device(ds_config: dict[str, Any], device: str) -> dict[str, Any]:
    """`ds_config` with torch's fused Adam(W) on the CPU accelerator (`device` "cpu") unless the config chose
    (`optimizer.params.torch_adam`, `optimizer.params.fused`).

    DeepSpeed's CPU Adam kernels keep beta**step as a running product inside the process and recompute it with
    pow() after a restart, so a resumed run drifts from an uninterrupted one in the last bits of every update;
    torch's Adam(W) computes it from the step each time, so resuming gives the same weights, bit for bit. Its
    fused CPU kernel steps a detector's parameters about 7x faster than its default per-tensor loop
    (benchmarks/FINDINGS.md)."""
    optimizer = ds_config.get("optimizer") or {}
    params = optimizer.get("params", {})
    if device != "cpu" or str(optimizer.get("type", "")).lower() not in ("adam", "adamw"):
        return ds_config
    chosen = {"torch_adam": True, **params}
    if chosen["torch_adam"]:
        chosen.setdefault("fused", True)
    return {**ds_config, "optimizer": {**optimizer, "params": chosen}}


# The bucket keys each ZeRO stage reads.
_STAGE_BUCKETS = {
    1: ("reduce_bucket_size", "allgather_bucket_size"),
    2: ("reduce_bucket_size", "allgather_bucket_size"),
    3: ("reduce_bucket_size", "stage3_prefetch_bucket_size", "stage3_param_persistence_threshold"),
}


def _unset_buckets_are_auto(data: dict[str, Any]) -> None:
    """An experiment that leaves a bucket size of its ZeRO stage unset gets it sized from the model ("auto"):
    DeepSpeed's own 5e8-element buckets make ZeRO-3 hold about 14x a detector's model states
    (docs/BENCHMARKS.md, "ZeRO model-state memory vs estimate")."""
    zero = data.get("zero_optimization")
    if isinstance(zero, dict) and isinstance(zero.get("stage"), int):
        for key in _STAGE_BUCKETS.get(zero["stage"], ()):
            zero.setdefault(key, AUTO)


def _experiment_targets(
    exp: ExperimentConfig, ds: DeepSpeedConfig, steps_per_epoch: int | None, num_parameters: int | None
) -> list[_Target]:
    train = exp.train
    targets = [
        _Target(("train_micro_batch_size_per_gpu",), train.batch_size, "train.batch_size"),
        _Target(("gradient_accumulation_steps",), train.grad_accum_steps, "train.grad_accum_steps"),
        _Target(("gradient_clipping",), train.gradient_clipping, "train.gradient_clipping"),
        _Target(("fp16", "enabled"), train.precision == "fp16", "train.precision"),
        # bf16 trains under torch.autocast with fp32 weights: DeepSpeed's bf16 mode casts BatchNorm and NMS inputs.
        _Target(("bf16", "enabled"), False, "train.precision (bf16 uses torch_autocast)"),
        _Target(("torch_autocast", "enabled"), train.precision == "bf16", "train.precision"),
        _Target(("torch_autocast", "dtype"), "bfloat16", None),
    ]
    targets += [
        _Target(("zero_optimization", key), size, None) for key, size in bucket_sizes(num_parameters).items()
    ]
    if ds.optimizer_type is not None:
        decided = {"lr": (train.lr, "train.lr"), "weight_decay": (train.weight_decay, "train.weight_decay")}
        defaults = {"betas": [0.9, 0.999], "eps": 1e-8}
        targets += _param_targets("optimizer", None, decided, defaults)
    scheduler_type = ds.get("scheduler.type")
    parameters = scheduler_parameters(scheduler_type) if isinstance(scheduler_type, str) else None
    if parameters is not None:
        decided = {"warmup_max_lr": (train.lr, "train.lr"), "cycle_max_lr": (train.lr, "train.lr")}
        decided["lr_range_test_min_lr"] = (train.lr, "train.lr")
        if steps_per_epoch is not None:
            total = total_training_steps(exp, steps_per_epoch)
            warmup = (warmup_steps(exp, total), f"train.warmup_ratio x {total} steps")
            decided |= {"total_num_steps": (total, "train.epochs/max_steps"), "warmup_num_steps": warmup}
            decided["cycle_first_step_size"] = warmup
        targets += _param_targets("scheduler", parameters, decided, {"warmup_min_lr": 0.0})
    return targets


def _param_targets(
    section: str, takes: Any, decided: dict[str, tuple[Any, str]], defaults: dict[str, Any]
) -> list[_Target]:
    """Targets for `section`.params; `takes` (the argument names of a scheduler) limits them, None: any."""
    wanted = (lambda key: True) if takes is None else (lambda key: key in takes)
    targets = [_Target((section, "params", k), v, src) for k, (v, src) in decided.items() if wanted(k)]
    return targets + [_Target((section, "params", k), v, None) for k, v in defaults.items() if wanted(k)]


def _fill(data: dict[str, Any], targets: list[_Target], must_match: bool) -> list[str]:
    """Set each target in `data` where it is "auto" (or missing, when must_match); return the conflicts."""
    conflicts = []
    for target in targets:
        current: Any = data
        for key in target.path:
            current = current.get(key) if isinstance(current, dict) else None
        if current == AUTO or (current is None and must_match and target.source is not None):
            node = data
            for parent in target.path[:-1]:
                node = node.setdefault(parent, {})
            node[target.path[-1]] = target.value
        elif must_match and target.source is not None and current != target.value:
            conflicts.append(
                f"deepspeed.{'.'.join(target.path)} is {show_value(current)} but {target.source} gives "
                f"{show_value(target.value)}; make them equal or set 'auto'"
            )
    return conflicts


def _require_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DsdetError(f"{name} must be a positive integer, got {value!r}")
