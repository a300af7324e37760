"""DeepSpeed's smaller sections: precision, activation checkpointing, pipeline, monitors and checkpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from dsdet.config.base import Auto, Float, Int, StrictModel

Count = Annotated[Int, Field(ge=0)]


class FP16Config(StrictModel):
    """fp16 mixed precision with loss scaling."""

    enabled: bool | Auto = Field(False, description="Train in fp16; 'auto' follows train.precision.")
    auto_cast: bool = Field(False, description="Cast the model's inputs to fp16.")
    loss_scale: Annotated[Float, Field(ge=0)] = Field(0.0, description="Static loss scale; 0 means dynamic.")
    initial_scale_power: Count = Field(16, description="Dynamic scaling starts at 2**initial_scale_power.")
    loss_scale_window: Annotated[Int, Field(ge=1)] = Field(1000, description="Steps between scale increases.")
    hysteresis: Count = Field(2, description="Overflows tolerated before the scale drops.")
    consecutive_hysteresis: bool = Field(
        False, description="Refill hysteresis after a step without overflow."
    )
    min_loss_scale: Annotated[Int, Field(ge=1)] = Field(1, description="Lowest dynamic loss scale.")


class BF16Config(StrictModel):
    """bfloat16 weights, gradients and optimizer (DeepSpeed's BF16 optimizer)."""

    enabled: bool | Auto = Field(
        False,
        description="Cast the whole model to bf16; detection models (BatchNorm, NMS) need torch_autocast "
        "instead, so dsdet resolves 'auto' to false.",
    )


class TorchAutocastConfig(StrictModel):
    """Mixed precision through torch.autocast with fp32 master weights (what train.precision=bf16 uses)."""

    enabled: bool | Auto = Field(False, description="Run forward passes under torch.autocast; 'auto' follows train.precision.")
    dtype: Literal["bfloat16", "float16"] | Auto = Field(
        "bfloat16", description="Autocast dtype; 'auto' follows train.precision."
    )
    lower_precision_safe_modules: list[str] | None = Field(
        None, description="Module classes whose parameters may be communicated in the autocast dtype."
    )


class ActivationCheckpointingConfig(StrictModel):
    """DeepSpeed's activation checkpointing (used by models that call deepspeed.checkpointing)."""

    partition_activations: bool = Field(False, description="Partition checkpointed activations across ranks.")
    cpu_checkpointing: bool = Field(
        False, description="Move partitioned activations to CPU (needs partitioning)."
    )
    contiguous_memory_optimization: bool = Field(False, description="Copy checkpoints into one buffer.")
    number_checkpoints: Annotated[Int, Field(ge=1)] | None = Field(
        None, description="Checkpoints per forward pass, for the contiguous buffer."
    )
    synchronize_checkpoint_boundary: bool = Field(
        False, description="Synchronize at each checkpoint boundary."
    )
    profile: bool = Field(False, description="Log the time spent in checkpointed forward and backward.")


class PipelineConfig(StrictModel):
    """Pipeline parallelism (DeepSpeed's PipelineEngine)."""

    stages: Annotated[Int, Field(ge=1)] | Auto = Field(
        "auto", description="Pipeline stages; DeepSpeed's own 'auto' takes them from the PipelineModule."
    )
    partition: Annotated[str, Field(pattern=r"^(parameters|uniform|type:.+)$")] = Field(
        "parameters", description="How layers are split: parameters, uniform or type:<regex>."
    )
    seed_layers: bool = Field(False, description="Seed each layer's initialization by its index.")
    activation_checkpoint_interval: Count = Field(0, description="Checkpoint every N layers (0 = off).")
    pipe_partitioned: bool = Field(True, description="Partition activations sent between stages.")
    grad_partitioned: bool = Field(True, description="Partition gradients sent between stages.")


class MonitorConfig(StrictModel):
    """A DeepSpeed monitor (TensorBoard or CSV) writing the engine's own metrics."""

    enabled: bool = Field(False, description="Write this monitor's logs.")
    output_path: str = Field("", description="Directory of the logs (empty = the launch directory).")
    job_name: str = Field("DeepSpeedJobName", description="Sub-directory for this job.")


class CheckpointConfig(StrictModel):
    """How DeepSpeed saves and loads checkpoints."""

    load_universal: bool = Field(False, description="Load a universal checkpoint (any parallel layout).")
    tag_validation: Literal["Ignore", "Warn", "Fail", "IGNORE", "WARN", "FAIL", "ignore", "warn", "fail"] = (
        Field("Warn", description="What to do when ranks disagree on the checkpoint tag.")
    )
    use_node_local_storage: bool = Field(False, description="Each node writes its own checkpoint files.")
