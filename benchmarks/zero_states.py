"""Rank entry point: bytes of model states each rank holds under each ZeRO configuration, from live tensors.

    deepspeed --num_gpus 2 --module benchmarks.zero_states OUT.json --config ZeRO-1 ... [KEY=VALUE ...]

For each configuration it builds the model, hands it to dsdet's DeepSpeedStrategy and trains a few steps on
real batches. After each backward pass (gradients, parameters and optimizer states all alive) it adds up the
storage of every live tensor, minus what was alive before the model was built. Rank 0 writes the JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from itertools import islice
from pathlib import Path

import torch

from benchmarks.settings import ZERO_CONFIGS
from dsdet.comm import all_gather_object
from dsdet.config import DeepSpeedConfig, estimate_for_config, load_experiment, resolve_deepspeed_config
from dsdet.engine.data import DataBundle, build_data
from dsdet.engine.distributed import init_distributed
from dsdet.engine.run import build_optimizer, count_parameters, model_spec
from dsdet.engine.strategy import DeepSpeedStrategy

STEPS = 3


def live_tensor_bytes() -> dict[str, int]:
    """Bytes of the distinct storages of all live tensors, by device type (after a full garbage collection)."""
    gc.collect()
    seen: set[tuple[str, int]] = set()
    totals: dict[str, int] = {}
    for obj in gc.get_objects():
        if not isinstance(obj, torch.Tensor) or obj.is_meta:
            continue
        try:
            storage = obj.untyped_storage()
        except (RuntimeError, NotImplementedError):
            continue
        key = (obj.device.type, storage.data_ptr())
        if storage.data_ptr() == 0 or key in seen:
            continue
        seen.add(key)
        totals[obj.device.type] = totals.get(obj.device.type, 0) + storage.nbytes()
    return totals


def minus(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """Per-device difference of two byte counts."""
    return {device: after.get(device, 0) - before.get(device, 0) for device in set(after) | set(before)}


def measure(config: str, overrides: list[str], data: DataBundle, world_size: int) -> dict:
    """Model-state bytes of this rank under `config`, next to the ZeRO-paper estimate."""
    exp = load_experiment(None, [*overrides, *ZERO_CONFIGS[config]])
    spec = model_spec(exp, data.num_classes)
    num_parameters = count_parameters(spec)
    ds_config = resolve_deepspeed_config(
        exp, world_size=world_size, steps_per_epoch=len(data.train_loader), num_parameters=num_parameters
    )
    batches = list(islice(iter(data.train_loader), STEPS))
    before = live_tensor_bytes()
    strategy = DeepSpeedStrategy(ds_config)
    strategy.prepare(strategy.build(spec), build_optimizer(exp, strategy.ds_config, len(data.train_loader)))
    after_backward = []
    for images, targets in batches:
        loss = sum(strategy.forward(*strategy.to_device(images, targets)).values())
        strategy.engine.backward(loss)
        del loss
        after_backward.append(minus(live_tensor_bytes(), before))
        strategy.engine.step()
    after_step = minus(live_tensor_bytes(), before)
    strategy.engine.destroy()
    del strategy
    left_over = minus(live_tensor_bytes(), before)
    estimate = estimate_for_config(DeepSpeedConfig.model_validate(ds_config), num_parameters, world_size)
    return {
        "config": config,
        "num_parameters": num_parameters,
        "measured_bytes": max(after_backward[1:] or after_backward, key=lambda d: sum(d.values())),
        "after_step_bytes": after_step,
        "left_over_bytes": left_over,
        "estimate": {
            "parameters": estimate.parameters,
            "gradients": estimate.gradients,
            "optimizer_states": estimate.optimizer_states,
            "offloaded": estimate.offloaded,
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Measure each --config in turn on this rank; rank 0 writes every rank's results to OUT."""
    parser = argparse.ArgumentParser(prog="deepspeed --module benchmarks.zero_states")
    parser.add_argument("out", type=Path)
    parser.add_argument("--config", action="append", choices=list(ZERO_CONFIGS), required=True)
    parser.add_argument("--local_rank", type=int, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args(argv)
    env = init_distributed()
    data = build_data(load_experiment(None, args.overrides), env.world_size, env.rank)
    results = [measure(config, args.overrides, data, env.world_size) for config in args.config]
    gathered = all_gather_object(results)
    if env.is_main:
        args.out.write_text(json.dumps({"world_size": env.world_size, "ranks": gathered}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
