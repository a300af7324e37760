"""One rank of the pipeline-parallel tests: a detector split into stages and trained with PipelineEngine.

    deepspeed --num_gpus N tests/scripts/pipeline_ds.py --family ssd --out DIR [--stages 2] [--steps 3]
        [--partition parameters] [--intervals 0,2] [--zero 0] [--micro-batches 1] [--save]

For each activation checkpoint interval a fresh detector (same seed on every rank) becomes a DetectorPipeline,
trained with SGD for --steps steps on one fixed batch per data-parallel replica. Rank 0 also takes one plain SGD
step on every replica's micro-batches (gradient averaged as DeepSpeed does), to compare the first loss and the
weight updates. With --save each engine saves a checkpoint under DIR/ckpt, which rank 0 exports and loads
strictly into the torchvision builder.
Each rank writes DIR/rank<R>.json.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
from pathlib import Path

import deepspeed
import torch
import torch.distributed as dist
from pipeline_data import build_detector, synthetic_batch

from dsdet.engine.distributed import discover_environment, release_shared_memory_name
from dsdet.engine.pipeline import (
    PackedBatches,
    Packer,
    gather_plain_state_dict,
    plain_state_dict,
    to_pipeline,
)

LR = 0.01
MICRO_BATCH = 2


def parse_args() -> argparse.Namespace:
    """Options of this script (the launcher adds --local_rank)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--family", choices=("ssd", "rcnn"), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--stages", type=int, default=2)
    parser.add_argument("--partition", default="parameters")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--intervals", default="0", help="activation checkpoint intervals, comma separated")
    parser.add_argument("--zero", type=int, default=0)
    parser.add_argument("--micro-batches", type=int, default=1)
    parser.add_argument("--save", action="store_true")
    parser.add_argument("--local_rank", type=int, default=0)
    return parser.parse_args()


def plain_step(model: torch.nn.Module, micro_batches: list[tuple[list, list]]) -> float:
    """One plain SGD step on the gradient averaged over `micro_batches`, as DeepSpeed averages it; the mean loss."""
    total = 0.0
    for images, targets in micro_batches:
        loss = sum(model(images, targets).values()) / len(micro_batches)
        loss.backward()
        total += float(loss)
    torch.optim.SGD(model.parameters(), lr=LR).step()
    return total


def replica_micro_batches(dp_rank: int, count: int) -> list[tuple[list, list]]:
    """The fixed micro-batches data-parallel replica `dp_rank` trains on."""
    images, targets = synthetic_batch(100 + dp_rank, MICRO_BATCH * count)
    return [
        (images[i : i + MICRO_BATCH], targets[i : i + MICRO_BATCH])
        for i in range(0, len(images), MICRO_BATCH)
    ]


def update_error(before: dict, pipelined: dict, plain: dict) -> float:
    """|pipelined update - plain update| / |plain update| over all trainable weights (L2 norms)."""
    keys = list(before)
    diff = torch.cat([(pipelined[k] - plain[k]).reshape(-1) for k in keys])
    update = torch.cat([(plain[k] - before[k]).reshape(-1) for k in keys])
    return float(diff.norm() / update.norm())


def run_interval(args: argparse.Namespace, interval: int, world_size: int) -> dict:
    """Train one fresh pipelined detector; compare with the plain detector on rank 0."""
    model = build_detector(args.family)
    before = {k: v.clone() for k, v in model.named_parameters()}
    reference = copy.deepcopy(model)
    pipe = to_pipeline(
        model,
        num_stages=args.stages,
        partition_method=args.partition,
        activation_checkpoint_interval=interval,
    )
    dp_rank, dp_size = pipe.mpu().get_data_parallel_rank(), world_size // args.stages
    micro_batches = replica_micro_batches(dp_rank, args.micro_batches)
    data = iter(PackedBatches(itertools.cycle(micro_batches), Packer(model.transform)))
    config = {
        "train_micro_batch_size_per_gpu": MICRO_BATCH,
        "gradient_accumulation_steps": args.micro_batches,
        "train_batch_size": MICRO_BATCH * args.micro_batches * dp_size,
        "zero_optimization": {"stage": args.zero},
        "zero_allow_untested_optimizer": True,
        "gradient_clipping": 0.0,  # DeepSpeed clips to 1.0 unless told otherwise; the plain step does not clip
        "steps_per_print": 10**6,
    }
    trainable = [p for p in pipe.parameters() if p.requires_grad]
    engine, *_ = deepspeed.initialize(model=pipe, optimizer=torch.optim.SGD(trainable, lr=LR), config=config)
    calls = []  # forward calls of this stage's first layer: 2 per micro-batch when its activations are recomputed
    pipe.forward_funcs[0].register_forward_hook(lambda *_: calls.append(1))
    losses, terms = [], []
    for step in range(args.steps):
        losses.append(float(engine.train_batch(data)))
        terms.append({k: float(v) for k, v in (engine.agg_additional_losses or {}).items()})
        if step == 0:
            after_first = gather_plain_state_dict(pipe)
            first_layer_calls = len(calls)
    result = {
        "interval": interval,
        "losses": losses,
        "loss_terms": terms,
        "stage": pipe.stage_id,
        "parts": [int(p) for p in pipe.partitions()],
        "dp_rank": dp_rank,
        "first_layer_calls": first_layer_calls,
    }
    if dist.get_rank() == 0:
        every_replica = [mb for r in range(dp_size) for mb in replica_micro_batches(r, args.micro_batches)]
        result["plain_loss"] = plain_step(reference, every_replica)
        plain_after = {k: v.detach() for k, v in reference.named_parameters()}
        result["update_error"] = update_error(before, after_first, plain_after)
    final = gather_plain_state_dict(pipe)
    result["gathered_keys_match"] = list(final) == list(reference.state_dict())
    result["state_sum"] = sum(float(v.double().sum()) for v in final.values() if v.is_floating_point())
    result["local_parameter_sum"] = sum(float(p.detach().double().sum()) for p in pipe.parameters())
    if args.save:
        engine.save_checkpoint(str(args.out / "ckpt"), tag=f"interval{interval}")
        dist.barrier()
        if dist.get_rank() == 0:
            exported = build_detector(args.family, seed=1)
            exported.load_state_dict(plain_state_dict(args.out / "ckpt"), strict=True)
            state = exported.state_dict()
            result["export_max_diff"] = max(
                float((state[k].float() - final[k].float()).abs().max()) for k in final
            )
    return result


def main() -> None:
    """Run every requested interval and write this rank's report."""
    args = parse_args()
    torch.set_num_threads(1)
    deepspeed.init_distributed(
        dist_backend="gloo", distributed_port=int(os.environ.get("MASTER_PORT", "29500"))
    )
    release_shared_memory_name(discover_environment())  # DeepSpeed leaves its /dev/shm segment otherwise
    rank, world_size = dist.get_rank(), dist.get_world_size()
    args.out.mkdir(parents=True, exist_ok=True)
    results = [run_interval(args, int(i), world_size) for i in args.intervals.split(",")]
    (args.out / f"rank{rank}.json").write_text(json.dumps({"rank": rank, "results": results}))
    dist.barrier()


if __name__ == "__main__":
    main()
