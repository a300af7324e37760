"""Resuming: find the checkpoint, restore engine, trainer state, data position and every rank's RNG."""

from __future__ import annotations

import logging
import random

import numpy as np
import torch

from dsdet.config import ExperimentConfig
from dsdet.engine import checkpoint as ckpt
from dsdet.engine.distributed import DistEnv
from dsdet.engine.export import run_info
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
    """This rank's random generator states (stored per rank in checkpoints)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def resume(
    trainer: Trainer, strategy: DeepSpeedStrategy, exp: ExperimentConfig, env: DistEnv, batch_size: int
) -> None:
    """Load `train.resume` (auto: the newest good checkpoint of the run) into the engine and the trainer state."""
    ref = ckpt.find_checkpoint(exp.train.resume, exp.train.output_dir) if exp.train.resume else None
    if ref is None:
        return
    saved = run_info(ref)
    if saved["model"]["name"] != exp.model.name:
        raise DsdetError(
            f"checkpoint {ref.path} is from model {saved['model']['name']!r}, not {exp.model.name!r}; "
            "point train.resume at a checkpoint of this model or set train.resume=null"
        )
    client_state = strategy.load(ref)
    trainer.state.load(client_state["trainer"])
    rng = client_state.get("rng", [])
    if len(rng) == env.world_size:
        set_rng_state(rng[env.rank])
    else:  # another world size: keep the data position in samples, reseed per rank
        samples = trainer.state.batch_in_epoch * batch_size * saved["world_size"]
        trainer.state.batch_in_epoch = samples // (batch_size * env.world_size)
        seed_everything(exp.train.seed + env.rank + 1000 * trainer.state.global_step)
    log.info("resumed from %s (epoch %d, step %d)", ref.path, trainer.state.epoch, trainer.state.global_step)
