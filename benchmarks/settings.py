"""What the suite runs: the models, ZeRO configurations and budgets of the full and the smoke mode."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelCase:
    """A model with the builder arguments and per-rank batch size it is benchmarked with."""

    name: str
    kwargs: dict = field(default_factory=dict)
    batch_size: int = 4

    def overrides(self) -> list[str]:
        """Experiment overrides selecting this model and batch size."""
        return [
            f"model.name={self.name}",
            f"model.kwargs={json.dumps(self.kwargs)}",
            f"train.batch_size={self.batch_size}",
        ]

    def describe(self) -> str:
        """Name, arguments and batch size, for the report."""
        args = ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"`{self.name}`" + (f" ({args})" if args else "") + f", batch {self.batch_size} per rank"


# Each ZeRO configuration of dsdet, as experiment overrides.
ZERO_CONFIGS: dict[str, list[str]] = {
    "ZeRO-0": ["deepspeed.zero_optimization.stage=0"],
    "ZeRO-1": ["deepspeed.zero_optimization.stage=1"],
    "ZeRO-2": ["deepspeed.zero_optimization.stage=2"],
    "ZeRO-3": ["deepspeed.zero_optimization.stage=3"],
    "ZeRO-2 + offload": [
        "deepspeed.zero_optimization.stage=2",
        "deepspeed.zero_optimization.offload_optimizer={device: cpu}",
    ],
    # ZeRO-3 with the bucket sizes dsdet.config.bucket_sizes computes for the model; dsdet's DeepSpeed base
    # leaves these keys out, so without "auto" DeepSpeed keeps its own 5e8-element buckets.
    "ZeRO-3 + sized buckets": [
        "deepspeed.zero_optimization.stage=3",
        *(
            f"deepspeed.zero_optimization.{key}=auto"
            for key in (
                "reduce_bucket_size",
                "allgather_bucket_size",
                "stage3_prefetch_bucket_size",
                "stage3_param_persistence_threshold",
            )
        ),
    ],
}

SSDLITE = ModelCase("ssdlite320_mobilenet_v3_large", {}, batch_size=4)
# Small images (the default dataset is 256 px) and fewer sampled proposals keep a CPU step near a second.
FASTER_RCNN = ModelCase(
    "fasterrcnn_mobilenet_v3_large_fpn",
    {
        "min_size": 256,
        "max_size": 256,
        "rpn_pre_nms_top_n_train": 600,
        "rpn_post_nms_top_n_train": 300,
        "box_batch_size_per_image": 128,
    },
    batch_size=2,
)
TINY = ModelCase("tinyssd", {"image_size": 128}, batch_size=2)


@dataclass(frozen=True)
class Budget:
    """How much each benchmark runs in one mode."""

    mode: str
    ranks: int
    throughput_models: tuple[ModelCase, ...]
    zero_configs: tuple[str, ...]
    repeats: int  # launches of each throughput run, in turns; their per-step rates are pooled
    bf16_variant: bool  # also launch dsdet ZeRO-2 with bf16 autocast on every model
    gloo_variant: bool  # also launch dsdet ZeRO-1 and ZeRO-2 with gloo collectives (no shared-memory kernel)
    torchrun_variant: bool  # also launch dsdet ZeRO-2 with torchrun on the first model (launcher cost)
    warmup_steps: int  # logged steps skipped before measuring; also the checkpoint interval
    measured_steps: int
    census_model: ModelCase
    census_configs: tuple[str, ...]
    eval_repeats: int
    checkpointing_model: ModelCase | None  # activation checkpointing and pipeline runs; None: not run
    accuracy_epochs: int | None  # None: not run
    timeout_s: float


FULL = Budget(
    mode="full",
    ranks=2,
    throughput_models=(SSDLITE, FASTER_RCNN),
    zero_configs=("ZeRO-0", "ZeRO-1", "ZeRO-2", "ZeRO-3", "ZeRO-2 + offload"),
    repeats=2,
    bf16_variant=True,
    gloo_variant=True,
    torchrun_variant=True,
    warmup_steps=4,
    measured_steps=8,
    census_model=FASTER_RCNN,
    census_configs=tuple(ZERO_CONFIGS),
    eval_repeats=3,
    checkpointing_model=SSDLITE,
    accuracy_epochs=8,
    timeout_s=600,
)

SMOKE = Budget(
    mode="smoke",
    ranks=2,
    throughput_models=(TINY,),
    zero_configs=("ZeRO-2",),
    repeats=2,
    bf16_variant=False,
    gloo_variant=False,
    torchrun_variant=False,
    warmup_steps=2,
    measured_steps=2,
    census_model=TINY,
    census_configs=("ZeRO-2",),
    eval_repeats=1,
    checkpointing_model=None,
    accuracy_epochs=1,
    timeout_s=300,
)
