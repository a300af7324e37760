"""DeepSpeed pipeline parallelism: the detector split into stages, trained one optimizer step per call."""

from __future__ import annotations

import torch
from torch import nn

from dsdet.comm import any_ranks
from dsdet.engine.deepspeed_internals import additional_losses
from dsdet.engine.optim import OptimizerSetup
from dsdet.engine.pipeline import PackedBatches, Packer, gather_plain_state_dict, to_pipeline
from dsdet.engine.strategy import Batch, DeepSpeedStrategy, StepResult, initialize
from dsdet.errors import DsdetError


def pipeline_stages(ds_config: dict) -> int:
    """Number of pipeline stages the DeepSpeed config asks for (1 = no pipeline)."""
    stages = ds_config.get("pipeline", {}).get("stages", 1)
    return stages if isinstance(stages, int) else 1


def data_parallel_layout(world_size: int, rank: int, stages: int) -> tuple[int, int]:
    """(data-parallel size, this rank's data-parallel index) under DeepSpeed's pipe × data topology."""
    if world_size % stages:
        raise DsdetError(
            f"deepspeed.pipeline.stages={stages} does not divide the {world_size} ranks; "
            "launch a multiple of the stage count"
        )
    data_parallel = world_size // stages
    return data_parallel, rank % data_parallel


class PipelineStrategy(DeepSpeedStrategy):
    """Trains a PipelineModule form of the model; evaluates the plain model with the gathered weights."""

    def __init__(self, ds_config: dict):
        super().__init__(ds_config)
        self.stages = pipeline_stages(ds_config)
        self.micro_batches_per_call = int(ds_config["gradient_accumulation_steps"])
        self.plain: nn.Module | None = None
        self.packer: Packer | None = None

    def prepare(self, model: nn.Module, optim: OptimizerSetup) -> None:
        """Split `model` into stages and `deepspeed.initialize` the PipelineModule."""
        section = self.ds_config.get("pipeline", {})
        pipe = to_pipeline(
            model,
            num_stages=self.stages,
            partition_method=section.get("partition", "parameters"),
            activation_checkpoint_interval=section.get("activation_checkpoint_interval", 0),
        )
        self.plain, self.packer = model, Packer(model.transform)
        self.ds_config = {**self.ds_config, **optim.config_keys}
        self.engine = initialize(pipe, optim, self.ds_config)

    def train_step(self, batches: list[Batch], stop: bool) -> StepResult:
        """Forward, backward and optimizer step over the micro-batches of one step, through every stage.

        DeepSpeed's `train_batch` steps before the loss is known, so a non-finite loss cannot be skipped here: the
        run stops (every rank agrees) and the last checkpoint holds finite weights."""
        loss = self.engine.train_batch(data_iter=iter(PackedBatches(batches, self.packer)))
        extra = additional_losses(self.engine)  # loss components, known on the last stage
        nonfinite, stop = any_ranks(not bool(torch.isfinite(loss)), stop)
        if nonfinite:
            raise DsdetError(
                f"non-finite loss at step {self.global_step} under pipeline stages: DeepSpeed's train_batch has "
                "already applied it, so it cannot be skipped; lower train.lr and resume from the last checkpoint"
            )
        return StepResult({"loss": loss, **extra}, finite=True, stepped=True, stop=stop)

    def eval_model(self) -> nn.Module:
        """The plain model holding every stage's current weights (gathered on every rank)."""
        self.plain.load_state_dict(gather_plain_state_dict(self.engine.module))
        return self.plain
