"""The one object that owns DeepSpeed: initialize, precision, backward/step, save and load.

The training loop talks to this class only, so it reads like plain PyTorch.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import deepspeed
import torch
from deepspeed.accelerator import get_accelerator
from torch import nn

from dsdet.comm import any_ranks
from dsdet.config import for_device
from dsdet.engine.checkpoint import layout as ckpt
from dsdet.engine.deepspeed_internals import engine_micro_steps, partitioned_elements
from dsdet.engine.optim import OptimizerSetup
from dsdet.engine.sharded_build import build_partitioned
from dsdet.errors import DsdetError
from dsdet.models.build import ModelSpec

log = logging.getLogger("dsdet.engine")


Batch = tuple[list[torch.Tensor], list[dict]]


def total_loss(losses: dict[str, torch.Tensor]) -> torch.Tensor:
    """The loss to backpropagate: the model's "loss" entry, else the sum of its components."""
    return losses["loss"] if "loss" in losses else sum(losses.values())


@dataclass(frozen=True)
class StepResult:
    """What one `train_step` did, agreed by every rank."""

    losses: dict[str, torch.Tensor]
    finite: bool  # every rank's loss was finite; when False nothing was applied
    stepped: bool  # the optimizer stepped
    stop: bool  # some rank asked to stop


def check_supported(ds_config: dict) -> None:
    """Refuse what DeepSpeed cannot run here or cannot checkpoint, with the reason and what to use instead."""
    accelerator = get_accelerator()
    if ds_config.get("fp16", {}).get("enabled") and accelerator.device_name() == "cpu":
        raise DsdetError(
            "fp16 needs a GPU: DeepSpeed's CPU accelerator has no fp16 support; "
            "set train.precision=bf16 or train.precision=fp32"
        )
    if ds_config.get("bf16", {}).get("enabled") and not accelerator.is_bf16_supported():
        raise DsdetError(f"bf16 is not supported on {accelerator.device_name()}; set train.precision=fp32")
    zero = ds_config.get("zero_optimization", {})
    if (zero.get("offload_optimizer") or {}).get("device") == "nvme":
        raise DsdetError(
            "zero_optimization.offload_optimizer.device nvme cannot be checkpointed: DeepSpeed saves the optimizer "
            "states it swapped to NVMe as empty tensors, so the run could never resume or export; "
            "set offload_optimizer.device to cpu"
        )
    if (zero.get("offload_param") or {}).get("device") == "nvme" and accelerator.device_name() == "cpu":
        raise DsdetError(
            "zero_optimization.offload_param.device nvme does not work on DeepSpeed's CPU accelerator (it swaps "
            "fp32 parameters back in as bf16); set offload_param.device to cpu here, nvme is for GPU machines"
        )


def initialize(model: nn.Module, optim: OptimizerSetup, ds_config: dict) -> deepspeed.DeepSpeedEngine:
    """`deepspeed.initialize` with dsdet's parameter groups, optimizer and schedule (DeepSpeed builds those that
    `optim` leaves as None from the config)."""
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        model_parameters=optim.groups(model),
        optimizer=optim.optimizer,
        lr_scheduler=optim.scheduler,
        config=ds_config,
    )
    return engine


class DeepSpeedStrategy:
    """Builds, wraps, steps, saves and restores a model with DeepSpeed."""

    micro_batches_per_call = 1  # micro-batches `train_step` takes at once (a pipeline: a whole step)

    def __init__(self, ds_config: dict):
        check_supported(ds_config)
        self.ds_config = for_device(ds_config, get_accelerator().device_name())
        self.engine: deepspeed.DeepSpeedEngine | None = None

    @property
    def zero_stage(self) -> int:
        return int(self.ds_config.get("zero_optimization", {}).get("stage", 0))

    @property
    def device(self) -> torch.device:
        return torch.device(get_accelerator().current_device_name())

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype forward passes compute in (autocast or DeepSpeed's low-precision weights)."""
        autocast = self.ds_config.get("torch_autocast", {})
        if autocast.get("enabled"):
            return {"bfloat16": torch.bfloat16, "float16": torch.float16}[autocast.get("dtype", "bfloat16")]
        if self.ds_config.get("bf16", {}).get("enabled"):
            return torch.bfloat16
        if self.ds_config.get("fp16", {}).get("enabled"):
            return torch.float16
        return torch.float32

    def build(self, spec: ModelSpec) -> nn.Module:
        """`spec`'s model; under ZeRO-3 constructed with its parameters partitioned (`build_partitioned`), so no
        rank ever holds the whole model."""
        if self.zero_stage != 3:
            return spec()
        model = build_partitioned(spec, self.ds_config)
        local, total = partitioned_elements(model)
        log.info("ZeRO-3: model built partitioned, %d of %d parameter elements on this rank", local, total)
        return model

    def prepare(self, model: nn.Module, optim: OptimizerSetup) -> None:
        """`deepspeed.initialize` the model (from `build`) with `optim`'s parameter groups, optimizer and schedule
        (or those the config names)."""
        self.ds_config = {**self.ds_config, **optim.config_keys}
        self.engine = initialize(model, optim, self.ds_config)

    @property
    def module(self) -> nn.Module:
        """The model DeepSpeed wraps."""
        return self.engine.module

    def eval_model(self) -> nn.Module:
        """The model to evaluate on every rank (ZeRO-3 gathers parameters during its forward)."""
        return self.engine.module

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Mixed-precision region for forward passes outside the engine, such as evaluation (no-op in fp32)."""
        if self.compute_dtype == torch.float32:
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=self.compute_dtype):
            yield

    def to_device(self, images: list[torch.Tensor], targets: list[dict]) -> tuple[list, list]:
        """Move a batch to the training device."""
        device = self.device
        images = [img.to(device, non_blocking=True) for img in images]
        targets = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
        return images, targets

    def forward(self, images: list[torch.Tensor], targets: list[dict]) -> dict[str, torch.Tensor]:
        """The model's loss dict for one micro-batch (DeepSpeed applies torch_autocast itself)."""
        self.engine.train()
        return self.engine(images, targets)

    @property
    def micro_batches_per_step(self) -> int:
        """Micro-batches per optimizer step (DeepSpeed's gradient_accumulation_steps)."""
        return int(self.engine.gradient_accumulation_steps())

    def train_step(self, batches: list[Batch], stop: bool) -> StepResult:
        """Forward one micro-batch; when every rank's loss is finite, backward and (at an accumulation boundary)
        optimizer step. `stop` is this rank's stop request, agreed in the same control reduction."""
        images, targets = self.to_device(*batches[0])
        losses = self.forward(images, targets)
        total = total_loss(losses)
        nonfinite, stop = any_ranks(not bool(torch.isfinite(total)), stop)
        if nonfinite:
            return StepResult(losses, finite=False, stepped=False, stop=stop)
        boundary = self.engine.is_gradient_accumulation_boundary()
        self.engine.backward(total)
        self.engine.step()
        return StepResult(losses, finite=True, stepped=boundary, stop=stop)

    @property
    def mid_accumulation(self) -> bool:
        """True between the micro-batches of one optimizer step: a checkpoint now would lose their gradients."""
        return engine_micro_steps(self.engine) % self.engine.gradient_accumulation_steps() != 0

    @property
    def global_step(self) -> int:
        return int(self.engine.global_steps)

    @property
    def lr(self) -> float:
        return float(self.engine.get_lr()[0])

    @property
    def is_main(self) -> bool:
        return self.engine.global_rank == 0

    def save(self, ref: ckpt.CheckpointRef, client_state: dict[str, Any]) -> None:
        """DeepSpeed's save of the engine (model, optimizer, schedule, `client_state`) into `ref`, on every rank;
        the Checkpointer does the rest."""
        self.engine.save_checkpoint(str(ref.root), tag=ref.tag, client_state=client_state, save_latest=False)

    def load(self, ref: ckpt.CheckpointRef, *, module_only: bool = False) -> dict[str, Any]:
        """Restore model, optimizer, scheduler (unless `module_only`) and return the client state."""
        load_path, client_state = self.engine.load_checkpoint(
            str(ref.root),
            tag=ref.tag,
            load_module_only=module_only,
            load_optimizer_states=not module_only,
            load_lr_scheduler_states=not module_only,
        )
        if load_path is None:
            raise DsdetError(f"DeepSpeed could not load checkpoint {ref.path}")
        return client_state or {}
