"""The DeepSpeed config as one model: DeepSpeed's own key names, cross-field rules, and the JSON it reads."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from dsdet.config.base import AUTO, Auto, Float, Int, StrictModel
from dsdet.config.ds_optim import ZERO_UNTESTED_OPTIMIZERS, OptimizerConfig, SchedulerConfig
from dsdet.config.ds_sections import (
    ActivationCheckpointingConfig,
    BF16Config,
    CheckpointConfig,
    FP16Config,
    MonitorConfig,
    PipelineConfig,
    TorchAutocastConfig,
)
from dsdet.config.ds_zero import ZeroConfig
from dsdet.errors import DsdetError

BatchSize = Annotated[Int, Field(ge=1)] | Auto | None
# "auto" values that DeepSpeed resolves itself; dsdet leaves them in the emitted JSON.
DEEPSPEED_NATIVE_AUTO = frozenset({"pipeline.stages"})


class DeepSpeedConfig(StrictModel):
    """A DeepSpeed JSON config; fields not set stay out of the emitted JSON, so DeepSpeed's defaults apply."""

    train_batch_size: BatchSize = Field(
        None,
        description="Samples per optimizer step over all ranks: micro batch x accumulation x data-parallel size.",
    )
    train_micro_batch_size_per_gpu: BatchSize = Field(None, description="Samples per rank per forward pass.")
    gradient_accumulation_steps: BatchSize = Field(None, description="Micro batches per optimizer step.")
    optimizer: OptimizerConfig | None = Field(
        None, description="The optimizer DeepSpeed builds (null = none)."
    )
    scheduler: SchedulerConfig | None = Field(None, description="The learning-rate scheduler (null = none).")
    fp16: FP16Config = Field(default_factory=FP16Config, description="fp16 mixed precision.")
    bf16: BF16Config = Field(default_factory=BF16Config, description="bf16 weights and optimizer.")
    torch_autocast: TorchAutocastConfig = Field(
        default_factory=TorchAutocastConfig, description="torch.autocast mixed precision, fp32 master weights."
    )
    zero_optimization: ZeroConfig = Field(
        default_factory=ZeroConfig, description="ZeRO partitioning and offload."
    )
    activation_checkpointing: ActivationCheckpointingConfig = Field(
        default_factory=ActivationCheckpointingConfig, description="Activation checkpointing."
    )
    gradient_clipping: Annotated[Float, Field(ge=0)] | Auto = Field(
        1.0,
        description="Clip the global gradient norm to this (0 = off); 'auto' takes train.gradient_clipping.",
    )
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig, description="Pipeline parallelism.")
    tensorboard: MonitorConfig = Field(
        default_factory=MonitorConfig, description="DeepSpeed's TensorBoard monitor."
    )
    csv_monitor: MonitorConfig = Field(default_factory=MonitorConfig, description="DeepSpeed's CSV monitor.")
    steps_per_print: Annotated[Int, Field(ge=1)] | None = Field(None, description="Log every N steps.")
    wall_clock_breakdown: bool = Field(False, description="Time forward, backward and step separately.")
    communication_data_type: Literal["fp32", "fp16", "bf16"] | None = Field(
        None, description="Data type of gradient communication (null = the training precision)."
    )
    prescale_gradients: bool = Field(False, description="Scale gradients before the all-reduce.")
    gradient_predivide_factor: Annotated[Float, Field(gt=0)] = Field(
        1.0, description="Divide gradients by this before the all-reduce and the rest after."
    )
    checkpoint: CheckpointConfig = Field(
        default_factory=CheckpointConfig, description="Checkpoint behaviour."
    )
    zero_allow_untested_optimizer: bool = Field(
        False, description="Allow ZeRO with optimizers DeepSpeed has not tested (Lamb, SGD)."
    )

    @model_validator(mode="after")
    def _cross_field_rules(self) -> DeepSpeedConfig:
        problems = self.rule_problems()
        if problems:
            raise PydanticCustomError(
                "cross_field", "{summary}", {"summary": "; ".join(problems), "problems": problems}
            )
        return self

    def rule_problems(self) -> list[str]:
        """Every broken rule that involves more than one field, each naming the fields."""
        zero = self.zero_optimization
        problems = []
        if zero.offload_param is not None and zero.offload_param.active and zero.stage != 3:
            problems.append(
                f"zero_optimization.offload_param needs zero_optimization.stage 3 (got stage {zero.stage})"
            )
        if zero.offload_optimizer is not None:
            if zero.offload_optimizer.active and zero.stage == 0:
                problems.append(
                    "zero_optimization.offload_optimizer needs zero_optimization.stage 1, 2 or 3 (got stage 0)"
                )
            if zero.offload_optimizer.ratio < 1 and zero.stage != 3:
                problems.append(
                    f"zero_optimization.offload_optimizer.ratio below 1 needs zero_optimization.stage 3 (got stage {zero.stage})"
                )
        if self.fp16.enabled is True and self.bf16.enabled is True:
            problems.append("fp16.enabled and bf16.enabled are both true; enable at most one")
        if self.torch_autocast.enabled is True and (self.fp16.enabled is True or self.bf16.enabled is True):
            problems.append("torch_autocast.enabled cannot be combined with fp16.enabled or bf16.enabled")
        if isinstance(self.pipeline.stages, int) and self.pipeline.stages > 1 and zero.stage >= 2:
            problems.append(
                f"pipeline.stages {self.pipeline.stages} needs zero_optimization.stage 0 or 1 "
                f"(DeepSpeed's pipeline engine does not support ZeRO stage {zero.stage})"
            )
        checkpointing = self.activation_checkpointing
        if checkpointing.cpu_checkpointing and not checkpointing.partition_activations:
            problems.append(
                "activation_checkpointing.cpu_checkpointing needs activation_checkpointing.partition_activations"
            )
        optimizer_type = self.optimizer.type.lower() if self.optimizer is not None else ""
        if (
            optimizer_type in ZERO_UNTESTED_OPTIMIZERS
            and zero.stage >= 1
            and not self.zero_allow_untested_optimizer
        ):
            problems.append(
                f"optimizer.type {self.optimizer.type} under zero_optimization.stage {zero.stage} "
                "needs zero_allow_untested_optimizer: true"
            )
        batch = _batch_problem(
            self.train_batch_size, self.train_micro_batch_size_per_gpu, self.gradient_accumulation_steps
        )
        return problems + ([batch] if batch else [])

    def batch_sizes(self, world_size: int) -> tuple[int, int, int]:
        """(train_batch_size, micro batch, accumulation) as DeepSpeed derives them; DsdetError if they cannot agree."""
        values = (
            self.train_batch_size,
            self.train_micro_batch_size_per_gpu,
            self.gradient_accumulation_steps,
        )
        if AUTO in values:
            raise DsdetError("the batch sizes are still 'auto'; resolve the config with an experiment first")
        problem = _batch_problem(*values, world_size=world_size)
        if problem:
            raise DsdetError(problem)
        return _derive_batch(*values, world_size)

    def to_deepspeed_dict(self, *, allow_auto: bool = False) -> dict[str, Any]:
        """The JSON dict DeepSpeed reads: only keys that were set; unresolved 'auto' is an error unless allowed."""
        data = {k: v for k, v in self.model_dump(mode="json", exclude_unset=True).items() if v is not None}
        unresolved = [] if allow_auto else auto_paths(data)
        if unresolved:
            raise DsdetError(
                f"unresolved 'auto' in {', '.join(unresolved)}: resolve the config against an experiment "
                "(dsdet config generate --world-size N, or dsdet train) or set the values"
            )
        return data


def auto_paths(data: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every 'auto' value left for dsdet to fill in a DeepSpeed dict."""
    if isinstance(data, dict):
        return [p for key, value in data.items() for p in auto_paths(value, f"{prefix}{key}.")]
    path = prefix.rstrip(".")
    return [path] if data == AUTO and path not in DEEPSPEED_NATIVE_AUTO else []


def _derive_batch(
    train: int | None, micro: int | None, accum: int | None, world: int
) -> tuple[int, int, int]:
    """Fill the missing batch sizes the way DeepSpeed's config parser does (train or micro is set)."""
    if train and micro and accum:
        return train, micro, accum
    if train and micro:
        return train, micro, train // micro // world
    if train and accum:
        return train, train // world // accum, accum
    if micro:
        return micro * (accum or 1) * world, micro, accum or 1
    return train, train // world, 1


def _batch_problem(train: Any, micro: Any, accum: Any, world_size: int | None = None) -> str | None:
    """What breaks train = micro x accumulation x world size; without a world size, only divisibility."""
    if AUTO in (train, micro, accum):
        return None
    if not train and not micro:
        return "set train_batch_size or train_micro_batch_size_per_gpu"
    if world_size is None:
        given = {
            k: v
            for k, v in (("train_micro_batch_size_per_gpu", micro), ("gradient_accumulation_steps", accum))
            if v
        }
        product = math.prod(given.values())
        if train and train % product:
            return f"train_batch_size {train} is not a multiple of {' x '.join(given)} = {product}"
        return None
    total, per_rank, steps = _derive_batch(train, micro, accum, world_size)
    if per_rank < 1 or steps < 1 or total != per_rank * steps * world_size:
        return (
            f"train_batch_size {total} must equal train_micro_batch_size_per_gpu {per_rank} x "
            f"gradient_accumulation_steps {steps} x world size {world_size}"
        )
    return None
