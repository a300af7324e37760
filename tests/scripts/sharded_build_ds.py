"""One rank of the sharded-build test: every registered detector built under ZeRO-3's `zero.Init` against the
plain build with the same seed.

    deepspeed --num_gpus 2 tests/scripts/sharded_build_ds.py --out DIR --weights FILE

For each registered model (and tinyssd once more with --weights and frozen BatchNorm, to cover the steps after
construction; and yolo under plain `zero.Init` as the control that must differ), the plain model is built, then the same spec under `build_partitioned`; the partitioned model's
gathered state dict is compared with the plain one, value for value. Rank 0 writes DIR/builds.json: per build the
keys whose values differ, the largest difference, and the parameter elements this rank held against the total.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import deepspeed
import torch

from dsdet.engine.deepspeed_internals import partitioned_elements
from dsdet.engine.distributed import init_distributed
from dsdet.engine.sharded_build import build_partitioned
from dsdet.models import list_models
from dsdet.models.build import ModelSpec

DS_CONFIG = {"train_batch_size": 2, "train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3}}


def without_whole_tensor_init(spec: ModelSpec, ds_config: dict) -> torch.nn.Module:
    """The control: construction under plain `zero.Init`, whose parents' initialisers miss the partitions."""
    with deepspeed.zero.Init(config_dict_or_path=ds_config, mem_efficient_linear=False):
        return spec.construct()


def compare(spec: ModelSpec, build=build_partitioned) -> dict:
    torch.manual_seed(0)
    plain = spec().state_dict()
    torch.manual_seed(0)
    sharded = build(spec, DS_CONFIG)
    local, total = partitioned_elements(sharded)
    with deepspeed.zero.GatheredParameters(list(sharded.parameters())):
        state = {key: value.detach().clone() for key, value in sharded.state_dict().items()}
    differing = sorted(key for key in plain if key not in state or not torch.equal(plain[key], state[key]))
    largest = max(
        ((plain[key].double() - state[key].double()).abs().max().item() for key in differing if key in state),
        default=0.0,
    )
    return {"differing": differing, "largest": largest, "local": local, "total": total, "keys": len(plain)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--local_rank", type=int, default=0)
    args = parser.parse_args()
    env = init_distributed()
    builds = {info.name: compare(ModelSpec(info.name, 3)) for info in list_models()}
    builds["tinyssd+weights+frozen_batchnorm"] = compare(
        ModelSpec("tinyssd", 3, weights=args.weights, norm="frozen_batchnorm", kwargs={"image_size": 128})
    )
    builds["control: yolo under plain zero.Init"] = compare(ModelSpec("yolo", 3), without_whole_tensor_init)
    if env.is_main:
        (args.out / "builds.json").write_text(json.dumps(builds))


if __name__ == "__main__":
    main()
