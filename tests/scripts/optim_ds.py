"""One rank of the optimizer tests: dsdet's parameter groups, optimizer and schedule inside DeepSpeed.

    deepspeed --num_gpus 2 tests/scripts/optim_ds.py --out DIR

For each case (optimizer x ZeRO stage x offload, or an optimizer or scheduler named in the DeepSpeed config) a small model with a convolution, a BatchNorm, a position
embedding and a head (whose learning rate the model's overrides scale by HEAD_LR_SCALE) is prepared by
DeepSpeedStrategy with dsdet's OptimizerSetup and trained STEPS steps on random data. Rank 0 writes DIR/cases.json:
per case the (lr, weight_decay) of every optimizer group before each step and after the last, the optimizer class
DeepSpeed steps, and the final weights (gathered at ZeRO-3).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import deepspeed
import torch
import torch.distributed as dist
from torch import nn

from dsdet.config import TrainSection
from dsdet.engine.distributed import init_distributed
from dsdet.engine.optim import optimizer_setup
from dsdet.engine.strategy import DeepSpeedStrategy

STEPS = 6
WARMUP = 2
LR = 0.01
WEIGHT_DECAY = 0.05
HEAD_LR_SCALE = 0.1
OFFLOAD = {"offload_optimizer": {"device": "cpu"}}
DS_ADAMW = {"optimizer": {"type": "AdamW", "params": {"lr": LR, "weight_decay": WEIGHT_DECAY}}}
DS_WARMUP = {"scheduler": {"type": "WarmupLR", "params": {"warmup_max_lr": LR, "warmup_num_steps": WARMUP}}}
# name: (train.optimizer, zero_optimization, keys of the user's DeepSpeed config)
CASES = {
    "adamw_zero0": ("adamw", {"stage": 0}, {}),
    "adamw_zero2": ("adamw", {"stage": 2}, {}),
    "adamw_zero3": ("adamw", {"stage": 3}, {}),
    "adamw_zero2_offload": ("adamw", {"stage": 2, **OFFLOAD}, {}),
    "adamw_zero3_offload": ("adamw", {"stage": 3, **OFFLOAD}, {}),
    "sgd_zero0": ("sgd", {"stage": 0}, {}),
    "sgd_zero2": ("sgd", {"stage": 2}, {}),
    "sgd_zero3_offload": ("sgd", {"stage": 3, **OFFLOAD}, {}),
    "deepspeed_adamw_zero2": ("adamw", {"stage": 2}, DS_ADAMW),
    "deepspeed_warmup_zero2": ("adamw", {"stage": 2}, DS_WARMUP),
}


class Tiny(nn.Module):
    """Every kind of parameter the groups treat differently."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.norm = nn.BatchNorm2d(8)
        self.pos_embed = nn.Parameter(torch.zeros(1, 8, 1, 1))
        self.head = nn.Linear(8, 2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.norm(self.stem(images)) + self.pos_embed
        return self.head(features.mean((2, 3)))


def head_overrides(_model: nn.Module, name: str) -> dict[str, float]:
    return {"lr_scale": HEAD_LR_SCALE} if name.startswith("head.") else {}


def run_case(optimizer: str, zero: dict, user_keys: dict) -> dict:
    torch.manual_seed(0)  # the same initial weights on every rank and in every case
    model = Tiny()
    train = TrainSection.model_validate(
        {
            "lr": LR,
            "weight_decay": WEIGHT_DECAY,
            "optimizer": {"name": optimizer},
            "schedule": {"name": "cosine"},
        }
    )
    ds_config = {
        "train_batch_size": 4,
        "train_micro_batch_size_per_gpu": 2,
        "gradient_accumulation_steps": 1,
        "zero_optimization": zero,
        "steps_per_print": 10**6,
        **user_keys,
    }
    strategy = DeepSpeedStrategy(ds_config)
    setup = optimizer_setup(
        train,
        strategy.ds_config,
        total_steps=STEPS,
        warmup_steps=WARMUP,
        device="cpu",
        overrides=head_overrides,
    )
    strategy.prepare(model, setup)
    engine = strategy.engine
    generator = torch.Generator().manual_seed(100 + dist.get_rank())
    groups = []
    for _ in range(STEPS):
        groups.append([(g["lr"], g["weight_decay"]) for g in engine.optimizer.param_groups])
        images = torch.randn(2, 3, 8, 8, generator=generator)
        loss = engine(images).pow(2).mean()
        engine.backward(loss)
        engine.step()
    groups.append([(g["lr"], g["weight_decay"]) for g in engine.optimizer.param_groups])
    with deepspeed.zero.GatheredParameters(list(engine.module.parameters())):
        weights = {name: p.detach().flatten().tolist() for name, p in engine.module.named_parameters()}
    result = {"groups": groups, "optimizer": type(engine.basic_optimizer).__name__, "weights": weights}
    engine.destroy()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--local_rank", type=int, default=0)
    args = parser.parse_args()
    env = init_distributed()
    results = {name: run_case(*case) for name, case in CASES.items()}
    if env.is_main:
        (args.out / "cases.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main()
