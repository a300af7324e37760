"""A human summary of a DeepSpeed config: precision, ZeRO, offload, batch, optimizer, scheduler, memory."""

from __future__ import annotations

from dsdet.config.deepspeed import DeepSpeedConfig
from dsdet.config.experiment import TrainSection
from dsdet.config.memory import estimate_for_config
from dsdet.config.optim import Cosine, MultiStep
from dsdet.errors import DsdetError

ZERO_PARTITIONS = {
    0: "nothing: every rank holds all parameters, gradients and optimizer states",
    1: "optimizer states",
    2: "optimizer states and gradients",
    3: "optimizer states, gradients and parameters",
}


def describe(
    config: DeepSpeedConfig,
    *,
    world_size: int = 1,
    num_parameters: int | None = None,
    train: TrainSection | None = None,
) -> list[str]:
    """One line per aspect of `config` on `world_size` ranks, then the model-state memory per rank; `train` (an
    experiment's) describes the optimizer and schedule dsdet builds where the config names none."""
    stage = config.zero_stage
    lines = [
        f"precision: {_precision(config)}",
        f"ZeRO stage {stage}: partitions {ZERO_PARTITIONS[stage]} across {world_size} data-parallel rank(s)",
        f"offload: {_offload(config)}",
        f"batch: {_batch(config, world_size)}",
        f"optimizer: {_typed(config.get('optimizer')) or _dsdet_optimizer(train)}",
        f"scheduler: {_typed(config.get('scheduler')) or _dsdet_schedule(train)}",
        f"gradient clipping: {config.get('gradient_clipping') or 'off'}",
    ]
    if config.get("activation_checkpointing.partition_activations"):
        on_cpu = ", on CPU" if config.get("activation_checkpointing.cpu_checkpointing") else ""
        lines.append(f"activation checkpointing: partitioned{on_cpu}")
    if isinstance(config.get("pipeline"), dict):
        stages, partition = (
            config.get("pipeline.stages", "auto"),
            config.get("pipeline.partition", "parameters"),
        )
        lines.append(f"pipeline: stages {stages}, partition by {partition}")
    if num_parameters is not None:
        lines.append(_memory(config, num_parameters, world_size, train.optimizer.name if train else None))
    return lines


def _precision(config: DeepSpeedConfig) -> str:
    precision = config.precision
    if precision == "fp16":
        loss_scale = config.fp16_loss_scale
        scale = "dynamic loss scaling" if loss_scale == 0 else f"static loss scale {loss_scale:g}"
        return f"fp16 mixed precision, {scale}"
    if precision == "bf16":
        return "bf16 weights and optimizer (DeepSpeed bf16)"
    if precision == "autocast":
        return f"{config.get('torch_autocast.dtype', 'bfloat16')} autocast, fp32 master weights"
    if precision == "auto":
        return "auto (follows train.precision of the experiment)"
    return "fp32"


def _offload(config: DeepSpeedConfig) -> str:
    parts = []
    for what, block in (("optimizer states and step", "offload_optimizer"), ("parameters", "offload_param")):
        device = config.offload_device(block)
        if device != "none":
            parts.append(
                f"{what} -> {device}" + (f" at {config.nvme_path(block)}" if device == "nvme" else "")
            )
    return "; ".join(parts) or "none"


def _batch(config: DeepSpeedConfig, world_size: int) -> str:
    values = [
        config.get(key)
        for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps")
    ]
    if "auto" in values:
        return "auto: micro batch <- train.batch_size, accumulation <- train.grad_accum_steps, x ranks"
    try:
        total, micro, accum = config.batch_sizes(world_size)
    except DsdetError as exc:
        return str(exc)
    return f"train_batch_size {total} = micro batch {micro} x accumulation {accum} x {world_size} rank(s)"


def _typed(section: object) -> str:
    if not isinstance(section, dict):
        return ""
    params = section.get("params") if isinstance(section.get("params"), dict) else {}
    return f"{section.get('type')} " + ", ".join(f"{key}={value}" for key, value in params.items())


def _dsdet_optimizer(train: TrainSection | None) -> str:
    if train is None:
        return "none in the config (the training code brings one)"
    options = train.optimizer
    if options.name == "sgd":
        details = f"momentum={options.momentum}, nesterov={str(options.nesterov).lower()}"
    else:
        details = f"betas={list(options.betas)}, eps={options.eps}"
    return (
        f"{options.name} built by dsdet (train.optimizer) lr={train.lr}, weight_decay={train.weight_decay} "
        f"({options.exempt_weight_decay} on norms, biases and position embeddings), {details}"
    )


def _dsdet_schedule(train: TrainSection | None) -> str:
    if train is None:
        return "none (constant learning rate)"
    schedule = train.schedule
    if isinstance(schedule, Cosine):
        then = f"cosine decay to {schedule.final_lr_ratio} x lr"
    elif isinstance(schedule, MultiStep):
        then = f"x{schedule.gamma} at {schedule.milestones} of the steps"
    else:
        then = "constant"
    return (
        f"{schedule.name} built by dsdet (train.schedule): linear warm-up from {schedule.warmup_start_factor} x lr "
        f"over {train.warmup_ratio} of the steps, then {then}"
    )


def _memory(config: DeepSpeedConfig, num_parameters: int, world_size: int, optimizer: str | None) -> str:
    estimate = estimate_for_config(config, num_parameters, world_size, optimizer)
    parts = [
        f"parameters {_size(estimate.parameters)}",
        f"gradients {_size(estimate.gradients)}",
        f"optimizer states {_size(estimate.optimizer_states)}",
        f"total {_size(estimate.accelerator_total)}",
    ]
    offloaded = f"; offloaded {_size(estimate.offloaded)}" if estimate.offloaded else ""
    assumed = " (precision 'auto' counted as fp32)" if config.precision == "auto" else ""
    return f"model states per rank ({num_parameters:,} parameters{assumed}): {', '.join(parts)}{offloaded}"


def _size(num_bytes: int) -> str:
    value, unit = float(num_bytes), "B"
    for larger in ("KiB", "MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
