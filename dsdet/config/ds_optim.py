"""DeepSpeed's `optimizer` and `scheduler` sections: one model per type, with DeepSpeed's parameter names."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from dsdet.config.base import Auto, Float, Int, StrictModel, any_case, tagged_union

Lr = Annotated[Float, Field(gt=0)]
NonNegative = Annotated[Float, Field(ge=0)]
Beta = Annotated[Float, Field(ge=0, lt=1)]
Steps = Annotated[Int, Field(ge=1)]
WarmupType = Literal["log", "linear"]


class AdamParams(StrictModel):
    """Parameters of Adam/AdamW (DeepSpeed's FusedAdam, CPUAdam or torch's Adam)."""

    lr: Lr | Auto = Field(1e-3, description="Learning rate; 'auto' takes train.lr.")
    betas: tuple[Beta, Beta] | Auto = Field((0.9, 0.999), description="Coefficients of the running averages.")
    eps: Annotated[Float, Field(gt=0)] | Auto = Field(1e-8, description="Term added to the denominator.")
    weight_decay: NonNegative | Auto = Field(
        0.0, description="Weight decay; 'auto' takes train.weight_decay."
    )
    adam_w_mode: bool = Field(True, description="Decoupled weight decay (AdamW) even when type is Adam.")
    torch_adam: bool = Field(
        False,
        description="Use torch.optim.Adam(W) instead of DeepSpeed's fused kernel; left unset, dsdet turns it on "
        "for CPU training, where DeepSpeed's kernel would make resumed runs differ in the last bits.",
    )
    fused: bool | None = Field(
        None,
        description="torch's fused Adam(W) kernel (only with torch_adam); left unset, dsdet turns it on for CPU "
        "training, where it steps a detector's parameters about 7x faster than torch's default per-tensor loop.",
    )

    @model_validator(mode="after")
    def _fused_needs_torch_adam(self) -> AdamParams:
        if self.fused is not None and "torch_adam" in self.model_fields_set and not self.torch_adam:
            raise ValueError(
                "fused selects torch's Adam kernel and needs torch_adam (DeepSpeed's kernels are fused)"
            )
        return self


class LambParams(StrictModel):
    """Parameters of DeepSpeed's FusedLamb."""

    lr: Lr | Auto = Field(1e-3, description="Learning rate; 'auto' takes train.lr.")
    betas: tuple[Beta, Beta] | Auto = Field((0.9, 0.999), description="Coefficients of the running averages.")
    eps: Annotated[Float, Field(gt=0)] | Auto = Field(1e-8, description="Term added to the denominator.")
    weight_decay: NonNegative | Auto = Field(
        0.0, description="Weight decay; 'auto' takes train.weight_decay."
    )
    bias_correction: bool = Field(True, description="Correct the bias of the running averages.")
    max_coeff: Annotated[Float, Field(gt=0)] = Field(10.0, description="Upper bound of the trust ratio.")
    min_coeff: NonNegative = Field(0.01, description="Lower bound of the trust ratio.")


class SGDParams(StrictModel):
    """Parameters of torch.optim.SGD."""

    lr: Lr | Auto = Field(1e-3, description="Learning rate; 'auto' takes train.lr.")
    momentum: Beta = Field(0.0, description="Momentum factor.")
    dampening: NonNegative = Field(0.0, description="Dampening for momentum.")
    weight_decay: NonNegative | Auto = Field(
        0.0, description="Weight decay; 'auto' takes train.weight_decay."
    )
    nesterov: bool = Field(False, description="Nesterov momentum (needs momentum > 0).")

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> SGDParams:
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        return self


class AdamOptimizer(StrictModel):
    type: Annotated[
        str, Field(pattern=any_case("adam"), description="Adam (DeepSpeed accepts any letter case).")
    ]
    params: AdamParams = Field(default_factory=AdamParams, description="Adam parameters.")


class AdamWOptimizer(StrictModel):
    type: Annotated[
        str, Field(pattern=any_case("adamw"), description="AdamW (DeepSpeed accepts any letter case).")
    ]
    params: AdamParams = Field(default_factory=AdamParams, description="AdamW parameters.")


class LambOptimizer(StrictModel):
    type: Annotated[
        str, Field(pattern=any_case("lamb"), description="Lamb (DeepSpeed accepts any letter case).")
    ]
    params: LambParams = Field(default_factory=LambParams, description="Lamb parameters.")


class SGDOptimizer(StrictModel):
    type: Literal["SGD"] = Field(description="SGD, spelled as in torch.optim.")
    params: SGDParams = Field(default_factory=SGDParams, description="SGD parameters.")


OptimizerConfig = tagged_union(
    "type", {"Adam": AdamOptimizer, "AdamW": AdamWOptimizer, "Lamb": LambOptimizer, "SGD": SGDOptimizer}
)
# Optimizers DeepSpeed runs under ZeRO only with zero_allow_untested_optimizer.
ZERO_UNTESTED_OPTIMIZERS = ("lamb", "sgd")


class WarmupLRParams(StrictModel):
    """Warm up from warmup_min_lr to warmup_max_lr, then hold."""

    warmup_min_lr: NonNegative | Auto = Field(0.0, description="Learning rate at step 0; 'auto' is 0.")
    warmup_max_lr: Lr | Auto = Field(1e-3, description="Learning rate after warm-up; 'auto' takes train.lr.")
    warmup_num_steps: Steps | Auto = Field(
        1000, description="Warm-up steps; 'auto' is ceil(train.warmup_ratio x total steps)."
    )
    warmup_type: WarmupType = Field("log", description="Shape of the warm-up curve.")


class WarmupDecayLRParams(WarmupLRParams):
    """Warm up, then decay linearly to 0 at total_num_steps."""

    total_num_steps: Steps | Auto = Field(description="Total optimizer steps; 'auto' is the experiment's.")


class WarmupCosineLRParams(StrictModel):
    """Warm up as a ratio of the optimizer's lr, then cosine decay."""

    total_num_steps: Steps | Auto = Field(description="Total optimizer steps; 'auto' is the experiment's.")
    warmup_min_ratio: Annotated[Float, Field(ge=0, le=1)] = Field(0.0, description="Start lr / optimizer lr.")
    warmup_num_steps: Steps | Auto = Field(
        1000, description="Warm-up steps; 'auto' is ceil(train.warmup_ratio x total steps)."
    )
    cos_min_ratio: Annotated[Float, Field(ge=0, le=1)] = Field(1e-4, description="Final lr / optimizer lr.")
    warmup_type: WarmupType = Field("log", description="Shape of the warm-up curve.")


class OneCycleParams(StrictModel):
    """1Cycle policy: lr (and momentum) cycle between bounds, then decay."""

    cycle_min_lr: NonNegative = Field(description="Lower learning-rate bound of the cycle.")
    cycle_max_lr: Lr | Auto = Field(description="Upper learning-rate bound; 'auto' takes train.lr.")
    decay_lr_rate: NonNegative = Field(0.0, description="Learning-rate decay after the cycle.")
    cycle_first_step_size: Steps | Auto = Field(
        2000, description="Steps of the rising half; 'auto' is the warm-up steps."
    )
    cycle_second_step_size: Annotated[Int, Field(ge=0)] | None = Field(
        None, description="Steps of the falling half (null = same as the first)."
    )
    cycle_first_stair_count: Annotated[Int, Field(ge=0)] = Field(0, description="Stairs in the first half.")
    cycle_second_stair_count: Annotated[Int, Field(ge=0)] | None = Field(
        None, description="Stairs in the second half."
    )
    decay_step_size: Annotated[Int, Field(ge=0)] = Field(
        0, description="Steps between decays after the cycle."
    )
    cycle_momentum: bool = Field(True, description="Cycle momentum inversely to the learning rate.")
    cycle_min_mom: Beta = Field(0.8, description="Lower momentum bound.")
    cycle_max_mom: Beta = Field(0.9, description="Upper momentum bound.")
    decay_mom_rate: NonNegative = Field(0.0, description="Momentum decay after the cycle.")

    @model_validator(mode="after")
    def _bounds_in_order(self) -> OneCycleParams:
        if self.cycle_max_lr != "auto" and self.cycle_min_lr > self.cycle_max_lr:
            raise ValueError(f"cycle_min_lr {self.cycle_min_lr} is above cycle_max_lr {self.cycle_max_lr}")
        if self.cycle_min_mom > self.cycle_max_mom:
            raise ValueError(
                f"cycle_min_mom {self.cycle_min_mom} is above cycle_max_mom {self.cycle_max_mom}"
            )
        return self


class LRRangeTestParams(StrictModel):
    """Learning-rate range test: grow the lr from lr_range_test_min_lr every step."""

    lr_range_test_min_lr: Lr | Auto = Field(
        1e-3, description="Starting learning rate; 'auto' takes train.lr."
    )
    lr_range_test_step_size: Steps = Field(2000, description="Steps between increases.")
    lr_range_test_step_rate: Annotated[Float, Field(gt=0)] = Field(1.0, description="Increase per step size.")
    lr_range_test_staircase: bool = Field(False, description="Increase in stairs instead of continuously.")


class WarmupLRScheduler(StrictModel):
    type: Literal["WarmupLR"] = Field(
        description="Scheduler name, spelled as in deepspeed.runtime.lr_schedules."
    )
    params: WarmupLRParams = Field(default_factory=WarmupLRParams, description="WarmupLR parameters.")


class WarmupDecayLRScheduler(StrictModel):
    type: Literal["WarmupDecayLR"] = Field(description="Scheduler name.")
    params: WarmupDecayLRParams = Field(description="WarmupDecayLR parameters.")


class WarmupCosineLRScheduler(StrictModel):
    type: Literal["WarmupCosineLR"] = Field(description="Scheduler name.")
    params: WarmupCosineLRParams = Field(description="WarmupCosineLR parameters.")


class OneCycleScheduler(StrictModel):
    type: Literal["OneCycle"] = Field(description="Scheduler name.")
    params: OneCycleParams = Field(description="OneCycle parameters.")


class LRRangeTestScheduler(StrictModel):
    type: Literal["LRRangeTest"] = Field(description="Scheduler name.")
    params: LRRangeTestParams = Field(
        default_factory=LRRangeTestParams, description="LRRangeTest parameters."
    )


SchedulerConfig = tagged_union(
    "type",
    {
        "WarmupLR": WarmupLRScheduler,
        "WarmupDecayLR": WarmupDecayLRScheduler,
        "WarmupCosineLR": WarmupCosineLRScheduler,
        "OneCycle": OneCycleScheduler,
        "LRRangeTest": LRRangeTestScheduler,
    },
)
