"""A human summary of a DeepSpeed config: precision, ZeRO, offload, batch, optimizer, scheduler, memory."""

from __future__ import annotations

from dsdet.config.deepspeed import DeepSpeedConfig
from dsdet.config.ds_zero import OffloadOptimizerConfig, OffloadParamConfig
from dsdet.config.memory import estimate_for_config
from dsdet.errors import DsdetError

ZERO_PARTITIONS = {
    0: "nothing: every rank holds all parameters, gradients and optimizer states",
    1: "optimizer states",
    2: "optimizer states and gradients",
    3: "optimizer states, gradients and parameters",
}


def describe(config: DeepSpeedConfig, *, world_size: int = 1, num_parameters: int | None = None) -> list[str]:
    """One line per aspect of `config` on `world_size` ranks, then the model-state memory per rank."""
    zero = config.zero_optimization
    lines = [
        f"precision: {_precision(config)}",
        f"ZeRO stage {zero.stage}: partitions {ZERO_PARTITIONS[zero.stage]} across {world_size} data-parallel rank(s)",
        f"offload: {_offload(zero.offload_optimizer, zero.offload_param)}",
        f"batch: {_batch(config, world_size)}",
        f"optimizer: {_typed(config.optimizer) or 'none in the config (the training code brings one)'}",
        f"scheduler: {_typed(config.scheduler) or 'none (constant learning rate)'}",
        f"gradient clipping: {config.gradient_clipping or 'off'}",
    ]
    checkpointing = config.activation_checkpointing
    if checkpointing.partition_activations:
        lines.append(
            f"activation checkpointing: partitioned{', on CPU' if checkpointing.cpu_checkpointing else ''}"
        )
    if "pipeline" in config.model_fields_set:
        lines.append(f"pipeline: stages {config.pipeline.stages}, partition by {config.pipeline.partition}")
    if num_parameters is not None:
        lines.append(_memory(config, num_parameters, world_size))
    return lines


def _precision(config: DeepSpeedConfig) -> str:
    if config.fp16.enabled is True:
        scale = (
            "dynamic loss scaling"
            if config.fp16.loss_scale == 0
            else f"static loss scale {config.fp16.loss_scale}"
        )
        return f"fp16 mixed precision, {scale}"
    if config.bf16.enabled is True:
        return "bf16 weights and optimizer (DeepSpeed bf16)"
    if config.torch_autocast.enabled is True:
        return f"{config.torch_autocast.dtype} autocast, fp32 master weights"
    if "auto" in (config.fp16.enabled, config.bf16.enabled, config.torch_autocast.enabled):
        return "auto (follows train.precision of the experiment)"
    return "fp32"


def _offload(optimizer: OffloadOptimizerConfig | None, param: OffloadParamConfig | None) -> str:
    parts = [
        f"{what} -> {block.device}" + (f" at {block.nvme_path}" if block.device == "nvme" else "")
        for what, block in (("optimizer states and step", optimizer), ("parameters", param))
        if block is not None and block.active
    ]
    return "; ".join(parts) or "none"


def _batch(config: DeepSpeedConfig, world_size: int) -> str:
    values = (
        config.train_batch_size,
        config.train_micro_batch_size_per_gpu,
        config.gradient_accumulation_steps,
    )
    if "auto" in values:
        return "auto: micro batch <- train.batch_size, accumulation <- train.grad_accum_steps, x ranks"
    try:
        total, micro, accum = config.batch_sizes(world_size)
    except DsdetError as exc:
        return str(exc)
    return f"train_batch_size {total} = micro batch {micro} x accumulation {accum} x {world_size} rank(s)"


def _typed(section: object) -> str:
    if section is None:
        return ""
    params = section.params.model_dump(mode="json", exclude_unset=True)
    return f"{section.type} " + ", ".join(f"{key}={value}" for key, value in params.items())


def _memory(config: DeepSpeedConfig, num_parameters: int, world_size: int) -> str:
    estimate = estimate_for_config(config, num_parameters, world_size)
    parts = [
        f"parameters {_size(estimate.parameters)}",
        f"gradients {_size(estimate.gradients)}",
        f"optimizer states {_size(estimate.optimizer_states)}",
        f"total {_size(estimate.accelerator_total)}",
    ]
    offloaded = f"; offloaded {_size(estimate.offloaded)}" if estimate.offloaded else ""
    assumed = (
        " (precision 'auto' counted as fp32)" if "auto" in (config.fp16.enabled, config.bf16.enabled) else ""
    )
    return f"model states per rank ({num_parameters:,} parameters{assumed}): {', '.join(parts)}{offloaded}"


def _size(num_bytes: int) -> str:
    value, unit = float(num_bytes), "B"
    for larger in ("KiB", "MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
