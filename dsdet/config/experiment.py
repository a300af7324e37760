"""The experiment: model, data, train, eval and the DeepSpeed section, with their defaults and bounds."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_serializer, field_validator, model_validator

from dsdet.config.augment import AugmentConfig, HFlip
from dsdet.config.base import Auto, Float, Int, StrictModel
from dsdet.config.deepspeed import DeepSpeedConfig
from dsdet.config.optim import AdamW, Cosine, OptimizerConfig, ScheduleConfig
from dsdet.config.presets import BASE_DEEPSPEED, overlay

Positive = Annotated[Int, Field(ge=1)]
DEFAULT_DATA_SUBDIR = Path(".cache") / "dsdet" / "default-v2"


def default_data_root() -> Path:
    """Where the embedded default dataset lives: $DSDET_DATA_DIR, else ~/.cache/dsdet/default-v2."""
    env = os.environ.get("DSDET_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / DEFAULT_DATA_SUBDIR


class ModelSection(StrictModel):
    """Which detector to build."""

    name: str = Field(
        "yolo", min_length=1, description="Detector name in dsdet.models (`dsdet models` lists them)."
    )
    num_classes: Annotated[Int, Field(ge=2)] | Auto = Field(
        "auto", description="Classes + 1 for background; 'auto' takes it from the dataset."
    )
    weights: str | None = Field(None, description="Path of weights to start from (null = random init).")
    norm: Literal["batchnorm", "frozen_batchnorm", "sync_batchnorm"] = Field(
        "batchnorm", description="Normalization layers of the backbone."
    )
    channels_last: bool = Field(
        True,
        description="Run convolutions on channels-last (NHWC) inputs; weights and exports are unchanged. "
        "1.05-1.3x faster training steps on CPU (benchmarks/FINDINGS.md); GPUs gain with bf16/fp16.",
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword arguments of the model builder."
    )


class SplitPaths(StrictModel):
    """Images and annotations of one split, relative to data.root unless absolute."""

    images: str = Field(min_length=1, description="Image directory.")
    annotations: str = Field(min_length=1, description="Annotation file (coco) or directory (voc, yolo).")


class DataSection(StrictModel):
    """Where the dataset is and how training images are augmented."""

    format: Literal["coco", "voc", "yolo"] = Field("coco", description="Annotation format.")
    root: str | None = Field(None, description="Dataset root (null = the embedded default dataset).")
    train: SplitPaths = Field(
        default_factory=lambda: SplitPaths(images="images/train", annotations="annotations/train.json"),
        description="Training split.",
    )
    val: SplitPaths = Field(
        default_factory=lambda: SplitPaths(images="images/val", annotations="annotations/val.json"),
        description="Validation split.",
    )
    classes: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None, min_length=1, description="Class names in label order (voc, yolo); null = from the annotations."
    )
    augment: list[AugmentConfig] = Field(
        default_factory=lambda: [HFlip(name="hflip")], description="Training augmentations, applied in order."
    )
    num_workers: Annotated[Int, Field(ge=0)] = Field(2, description="Data-loader worker processes per rank.")
    aspect_ratio_group_factor: Annotated[Int, Field(ge=-1)] = Field(
        3, description="Group images by aspect ratio into 2*factor bins (-1 = off)."
    )

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, classes: list[str] | None) -> list[str] | None:
        if classes is not None and len(set(classes)) != len(classes):
            repeated = sorted({c for c in classes if classes.count(c) > 1})
            raise ValueError(f"class names repeat: {', '.join(repeated)}")
        return classes

    def root_dir(self) -> Path:
        """The dataset root: `root`, or the default dataset's directory when it is null."""
        return Path(self.root).expanduser() if self.root is not None else default_data_root()

    def split_paths(self, split: Literal["train", "val"]) -> tuple[Path, Path]:
        """(images, annotations) of a split, resolved against the root."""
        paths = self.train if split == "train" else self.val
        return self.root_dir() / paths.images, self.root_dir() / paths.annotations


class CpuSection(StrictModel):
    """Speed-ups for CPU ranks: how fast a step runs, never what it computes beyond float rounding."""

    collectives: Literal["shared_memory", "gloo"] = Field(
        "shared_memory",
        description="CPU jobs with every rank on one node: run the whole-job float all-reduces and all-gathers "
        "(gradients, ZeRO-1/2 parameters) through DeepSpeed's shared-memory kernel, bit-identical to gloo and "
        "several times faster; gloo everywhere else. Ignored on GPUs.",
    )
    malloc: Literal["retain", "system"] = Field(
        "retain",
        description="CPU ranks on glibc: serve every allocation from malloc's heap and keep freed memory for "
        "reuse, instead of a fresh mmap (page faults, zero-filling) for each large tensor of every step; "
        "resident memory then stays at its peak. 'system' keeps glibc's defaults. Ignored on GPUs.",
    )
    roi_align: Literal["sparse", "torchvision"] = Field(
        "sparse",
        description="Faster/Mask R-CNN training on CPU: RoIAlign (forward and backward) as a sparse matrix "
        "product, the same values and gradients as torchvision's kernels up to float rounding and about 6x "
        "faster (benchmarks/FINDINGS.md); 'torchvision' keeps its kernels. Inference and GPUs always use "
        "torchvision's.",
    )


class TrainSection(StrictModel):
    """The training loop: length, batch, optimizer values, precision, checkpoints."""

    epochs: Positive = Field(12, description="Passes over the training set.")
    max_steps: Positive | None = Field(
        None, description="Stop after this many optimizer steps (null = epochs)."
    )
    batch_size: Positive = Field(4, description="Images per rank per forward pass (the micro batch).")
    grad_accum_steps: Positive = Field(1, description="Micro batches per optimizer step.")
    lr: Annotated[Float, Field(gt=0)] = Field(0.002, description="Peak learning rate.")
    weight_decay: Annotated[Float, Field(ge=0)] = Field(1e-4, description="Weight decay.")
    warmup_ratio: Annotated[Float, Field(ge=0, le=1)] = Field(
        0.1, description="Share of the steps spent warming up."
    )
    optimizer: OptimizerConfig = Field(
        default_factory=lambda: AdamW(name="adamw"),
        description="The optimizer dsdet builds (unless the deepspeed section names one).",
    )
    schedule: ScheduleConfig = Field(
        default_factory=lambda: Cosine(name="cosine"),
        description="The learning-rate schedule dsdet builds (unless the deepspeed section names a scheduler).",
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="Training precision.")
    gradient_clipping: Annotated[Float, Field(ge=0)] = Field(0.0, description="Max gradient norm (0 = off).")
    activation_checkpointing: bool = Field(
        False,
        description="Recompute backbone block activations in the backward pass (less memory, more time); "
        "configured by deepspeed.activation_checkpointing.",
    )
    cpu: CpuSection = Field(
        default_factory=CpuSection, description="Speed-ups for CPU ranks (each ignored on GPUs)."
    )
    seed: Annotated[Int, Field(ge=0)] = Field(42, description="Random seed.")
    output_dir: str = Field(
        "runs/default", min_length=1, description="Checkpoints, logs and exports go here."
    )
    checkpoint_every_steps: Positive | None = Field(
        None, description="Also checkpoint every N steps (null = per epoch)."
    )
    keep_last: Positive = Field(3, description="Checkpoints kept.")
    resume: str | None = Field(
        "auto", description="'auto' resumes the latest checkpoint in output_dir; a path; null = fresh."
    )
    log_every_steps: Positive = Field(10, description="Log scalars every N steps.")
    nonfinite_loss: Literal["skip", "stop"] = Field(
        "skip", description="On a NaN/inf loss: skip the step or stop."
    )
    export_on_finish: bool = Field(True, description="Export the final model when training ends.")


class EvalSection(StrictModel):
    """Validation during training."""

    every_epochs: Annotated[Int, Field(ge=0)] = Field(1, description="Evaluate every N epochs (0 = never).")
    batch_size: Positive | None = Field(None, description="Images per rank (null = train.batch_size).")
    max_detections: Positive = Field(100, description="Detections kept per image.")
    num_vis_images: Annotated[Int, Field(ge=0)] = Field(4, description="Images drawn with their detections.")


class ExperimentConfig(StrictModel):
    """One training experiment; the `deepspeed` section is laid over dsdet's 'auto' DeepSpeed base."""

    model: ModelSection = Field(default_factory=ModelSection, description="The detector.")
    data: DataSection = Field(default_factory=DataSection, description="The dataset.")
    train: TrainSection = Field(default_factory=TrainSection, description="The training loop.")
    eval: EvalSection = Field(default_factory=EvalSection, description="Validation.")
    deepspeed: DeepSpeedConfig = Field(
        default_factory=lambda: DeepSpeedConfig.model_validate(BASE_DEEPSPEED),
        description="DeepSpeed config laid over dsdet's base, where 'auto' values come from the sections above.",
    )

    @field_validator("deepspeed", mode="before")
    @classmethod
    def _over_base(cls, value: Any) -> Any:
        return overlay(BASE_DEEPSPEED, value) if isinstance(value, dict) else value

    @field_serializer("deepspeed")
    def _set_keys_only(self, value: DeepSpeedConfig) -> dict[str, Any]:
        return value.model_dump(mode="json", exclude_unset=True)

    @model_validator(mode="after")
    def _classes_match(self) -> ExperimentConfig:
        classes, num_classes = self.data.classes, self.model.num_classes
        if classes is not None and num_classes != "auto" and num_classes != len(classes) + 1:
            raise ValueError(
                f"model.num_classes {num_classes} must be len(data.classes) + 1 = {len(classes) + 1} (or 'auto')"
            )
        return self


# Settings that change where or how often things are written, or how fast, not what is trained.
_HASH_IGNORED = {
    "train": (
        "output_dir",
        "resume",
        "log_every_steps",
        "checkpoint_every_steps",
        "keep_last",
        "export_on_finish",
        "activation_checkpointing",
        "cpu",
    ),
    "data": ("num_workers",),
    "eval": ("num_vis_images",),
}


def experiment_hash(exp: ExperimentConfig) -> str:
    """A stable 16-hex-digit hash of everything that decides what is trained (not output paths or log rates)."""
    data = exp.model_dump(mode="json")
    for section, keys in _HASH_IGNORED.items():
        for key in keys:
            data[section].pop(key)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
