"""Resuming: find the checkpoint, restore engine, trainer state, data position and every rank's RNG."""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dsdet.comm import barrier
from dsdet.config import ExperimentConfig
from dsdet.engine.checkpoint import Checkpointer, CheckpointRef, client_parts, run_info, universal
from dsdet.engine.distributed import DistEnv
from dsdet.engine.strategy import DeepSpeedStrategy
from dsdet.engine.trainer import Trainer
from dsdet.errors import DsdetError

log = logging.getLogger("dsdet")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """This rank's random generator states as plain values and tensors (checkpoints stay loadable with
    `torch.load(weights_only=True)`)."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (kind, keys.tolist(), position, has_gauss, cached_gaussian),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` returned."""
    random.setstate(state["python"])
    kind, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])


def model_identity(exp: ExperimentConfig, num_classes: int) -> dict[str, Any]:
    """What fixes the model's parameter shapes; stored in run_info.json and compared on resume."""
    m = exp.model
    return {"name": m.name, "num_classes": num_classes, "norm": m.norm, "kwargs": m.kwargs}


@dataclass(frozen=True)
class ResumePlan:
    """The checkpoint to resume (None: a fresh run) and what DeepSpeed loads: it, or its universal form."""

    ref: CheckpointRef | None = None
    saved: dict[str, Any] = field(default_factory=dict)  # the checkpoint's run_info.json
    universal: CheckpointRef | None = None

    def deepspeed_config(self, ds_config: dict) -> dict:
        """The DeepSpeed config to initialize with (universal loading switched on when needed)."""
        return universal.with_universal_loading(ds_config) if self.universal else ds_config


def plan_resume(
    exp: ExperimentConfig, env: DistEnv, checkpointer: Checkpointer, num_classes: int, ds_config: dict
) -> ResumePlan:
    """Find `train.resume` (auto: the run's newest good checkpoint, verified by every rank), check it fits this
    model, and convert it to a universal checkpoint (rank 0, once) when the world size or ZeRO stage changed.
    Call on every rank."""
    ref = checkpointer.find(exp.train.resume, exp.train.output_dir)
    if ref is None:
        return ResumePlan()
    saved = run_info(ref)
    wanted = model_identity(exp, num_classes)
    if json.dumps(saved["model"], sort_keys=True) != json.dumps(wanted, sort_keys=True):
        raise DsdetError(
            f"checkpoint {ref.path} is from another model ({saved['model']}, this run builds {wanted}); "
            "point train.resume at a checkpoint of this model or set train.resume=null"
        )
    layout = universal.Layout.of(int(saved["world_size"]), saved["deepspeed"])
    if not universal.needs_universal(ref, layout, universal.Layout.of(env.world_size, ds_config)):
        return ResumePlan(ref, saved)
    if env.is_main:
        universal.convert(ref)
    barrier()
    return ResumePlan(ref, saved, universal.universal_ref(ref))


def resume(
    trainer: Trainer,
    strategy: DeepSpeedStrategy,
    plan: ResumePlan,
    exp: ExperimentConfig,
    env: DistEnv,
    batch_size: int,
) -> None:
    """Load the planned checkpoint into the engine and the trainer state; restore or rescale the data position."""
    if plan.ref is None:
        return
    if plan.universal is not None:
        client_state = strategy.load(plan.universal)
        universal.restore_buffers(strategy.module, plan.universal)
    else:
        client_state = strategy.load(plan.ref)
    trainer_state, rng = client_parts(client_state)
    trainer.state.load(trainer_state)
    if len(rng) == env.world_size:
        set_rng_state(rng[env.rank])
    else:  # another world size: keep the data position in samples, reseed per rank
        samples = trainer.state.batch_in_epoch * batch_size * plan.saved["world_size"]
        step = strategy.micro_batches_per_step  # resume on an optimizer-step boundary of this epoch
        batches = min(samples // (batch_size * env.world_size), trainer.batches_per_epoch)
        trainer.state.batch_in_epoch = batches // step * step
        seed_everything(exp.train.seed + env.rank + 1000 * trainer.state.global_step)
    log.info(
        "resumed from %s (epoch %d, step %d)", plan.ref.path, trainer.state.epoch, trainer.state.global_step
    )
