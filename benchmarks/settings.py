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
    roi_align: bool = False  # the model pools RoIs (train.cpu.roi_align applies)

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


@dataclass(frozen=True)
class Variant:
    """dsdet under one ZeRO configuration with one setting changed: a row of its own next to that configuration,
    to show what the setting is worth."""

    config: str  # a key of ZERO_CONFIGS
    name: str  # appended to the row label, e.g. " + bf16"
    overrides: tuple[str, ...] = ()
    launcher: str = "deepspeed"
    roi_align_models_only: bool = False  # only on models that pool RoIs
    first_model_only: bool = False

    def applies_to(self, case: ModelCase, first: bool) -> bool:
        """Whether this variant runs on `case` (`first`: the budget's first throughput model)."""
        return (case.roi_align or not self.roi_align_models_only) and (first or not self.first_model_only)


VARIANTS = (
    # each of dsdet's CPU defaults switched back to what a plain loop has
    Variant("ZeRO-2", " + gloo collectives", ("train.cpu.collectives=gloo",)),
    Variant("ZeRO-2", " + system malloc", ("train.cpu.malloc=system",)),
    Variant(
        "ZeRO-2", " + torchvision RoIAlign", ("train.cpu.roi_align=torchvision",), roi_align_models_only=True
    ),
    # bf16 autocast with fp32 master weights, against the plain loop in fp32
    Variant("ZeRO-2", " + bf16", ("train.precision=bf16",)),
    # the launcher's own cost
    Variant("ZeRO-2", " via torchrun", launcher="torchrun", first_model_only=True),
)
# The plain loop's ranks with glibc malloc set as train.cpu.malloc=retain sets it, through glibc's environment
# variables (what a plain loop's user can do without dsdet).
PLAIN_MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1)}

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
    roi_align=True,
)
TINY = ModelCase("tinyssd", {"image_size": 128}, batch_size=2)
# The zoo's largest model (44M parameters), for checkpoint save time; one small image per rank.
MASK_RCNN = ModelCase(
    "maskrcnn_resnet50_fpn", {"min_size": 256, "max_size": 256}, batch_size=1, roi_align=True
)


@dataclass(frozen=True)
class Budget:
    """How much each benchmark runs in one mode."""

    mode: str
    ranks: int
    throughput_models: tuple[ModelCase, ...]
    zero_configs: tuple[str, ...]
    repeats: int  # launches of each throughput run, in turns; their per-step rates are pooled
    variants: tuple[Variant, ...]  # extra dsdet rows
    plain_malloc_variant: bool  # also launch the plain loop with PLAIN_MALLOC_ENV
    warmup_steps: int  # logged steps skipped before measuring; also the checkpoint interval
    measured_steps: int
    census_model: ModelCase
    census_configs: tuple[str, ...]
    eval_repeats: int
    checkpointing_model: ModelCase | None  # activation checkpointing and pipeline runs; None: not run
    checkpoint_model: ModelCase  # checkpoint save and verify time
    checkpoint_repeats: int
    accuracy_epochs: int | None  # None: not run
    timeout_s: float


FULL = Budget(
    mode="full",
    ranks=2,
    throughput_models=(SSDLITE, FASTER_RCNN),
    zero_configs=("ZeRO-0", "ZeRO-1", "ZeRO-2", "ZeRO-3", "ZeRO-2 + offload"),
    repeats=2,
    variants=VARIANTS,
    plain_malloc_variant=True,
    warmup_steps=4,
    measured_steps=8,
    census_model=FASTER_RCNN,
    census_configs=tuple(ZERO_CONFIGS),
    eval_repeats=3,
    checkpointing_model=SSDLITE,
    checkpoint_model=MASK_RCNN,
    checkpoint_repeats=3,
    accuracy_epochs=8,
    timeout_s=600,
)

SMOKE = Budget(
    mode="smoke",
    ranks=2,
    throughput_models=(TINY,),
    zero_configs=("ZeRO-2",),
    repeats=2,
    variants=(),
    plain_malloc_variant=False,
    warmup_steps=2,
    measured_steps=2,
    census_model=TINY,
    census_configs=("ZeRO-2",),
    eval_repeats=1,
    checkpointing_model=None,
    checkpoint_model=TINY,
    checkpoint_repeats=1,
    accuracy_epochs=1,
    timeout_s=300,
)
