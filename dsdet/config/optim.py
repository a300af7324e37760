"""`train.optimizer` and `train.schedule`: the optimizer and learning-rate schedule dsdet builds and hands to
DeepSpeed (unless the `deepspeed` section names its own)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from dsdet.config.base import Float, StrictModel, tagged_union

Fraction = Annotated[Float, Field(ge=0, le=1)]
Beta = Annotated[Float, Field(ge=0, lt=1)]


class _OptimizerBase(StrictModel):
    exempt_weight_decay: Annotated[Float, Field(ge=0)] = Field(
        0.0,
        description="Weight decay of normalization weights, biases and position embeddings (train.weight_decay "
        "applies to every other parameter).",
    )


class AdamW(_OptimizerBase):
    """torch.optim.AdamW (fused); DeepSpeedCPUAdam when the optimizer is offloaded on a GPU machine."""

    name: Literal["adamw"]
    betas: tuple[Beta, Beta] = Field((0.9, 0.999), description="Coefficients of the moment averages.")
    eps: Annotated[Float, Field(gt=0)] = Field(1e-8, description="Term added to the denominator.")


class SGD(_OptimizerBase):
    """torch.optim.SGD with momentum."""

    name: Literal["sgd"]
    momentum: Beta = Field(0.9, description="Momentum factor.")
    nesterov: bool = Field(False, description="Nesterov momentum.")


OptimizerConfig = tagged_union("name", {"adamw": AdamW, "sgd": SGD})


class _ScheduleBase(StrictModel):
    warmup_start_factor: Fraction = Field(
        0.001,
        description="Learning rate of the first step as a fraction of train.lr; it rises linearly to train.lr "
        "over train.warmup_ratio of the steps.",
    )


class Cosine(_ScheduleBase):
    """Warm-up, then cosine decay towards `final_lr_ratio` x train.lr, reached as the run ends."""

    name: Literal["cosine"]
    final_lr_ratio: Fraction = Field(
        0.0, description="Learning rate the decay reaches as the run ends, as a fraction of train.lr."
    )


class MultiStep(_ScheduleBase):
    """Warm-up, then the learning rate times `gamma` at each milestone."""

    name: Literal["multistep"]
    milestones: list[Annotated[Float, Field(gt=0, lt=1)]] = Field(
        [0.67, 0.89],
        min_length=1,
        description="Where the rate drops, as fractions of the run's optimizer steps, increasing.",
    )
    gamma: Annotated[Float, Field(gt=0, le=1)] = Field(0.1, description="Factor applied at each milestone.")

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, milestones: list[float]) -> list[float]:
        if any(a >= b for a, b in zip(milestones, milestones[1:], strict=False)):
            raise ValueError("must increase")
        return milestones


class Constant(_ScheduleBase):
    """Warm-up, then train.lr to the end."""

    name: Literal["constant"]


ScheduleConfig = tagged_union("name", {"cosine": Cosine, "multistep": MultiStep, "constant": Constant})
