"""The plain PyTorch baseline: torchrun + DistributedDataParallel, dsdet's model and data, no DeepSpeed.

    torchrun --nproc-per-node 2 -m benchmarks.plain_ddp [--recipe adamw|reference] [KEY=VALUE ...]

It reads the same experiment overrides as `python -m dsdet.train` (model, data, batch size, steps, logging,
checkpoints, evaluation) and writes the same `train_log.jsonl` and `metrics.jsonl` lines, so one parser
measures both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LinearLR

from dsdet.config import ExperimentConfig, load_experiment, total_training_steps, warmup_steps
from dsdet.engine.data import DataBundle, build_data
from dsdet.engine.distributed import DistEnv, discover_environment
from dsdet.errors import DsdetError
from dsdet.eval import CocoEvaluator
from dsdet.models import build_model

RECIPES = ("adamw", "reference")
REFERENCE_LR_PER_16_IMAGES = 0.02  # torchvision's detection reference: lr 0.02 for 8 GPUs x 2 images
REFERENCE_WARMUP_FACTOR = 0.001


def make_optimizer(
    recipe: str, model: torch.nn.Module, exp: ExperimentConfig, global_batch: int, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, LinearLR]:
    """AdamW with dsdet's lr, weight decay and linear warm-up; or torchvision's reference SGD recipe."""
    params = [p for p in model.parameters() if p.requires_grad]
    if recipe == "adamw":
        optimizer = torch.optim.AdamW(params, lr=exp.train.lr, weight_decay=exp.train.weight_decay)
        warmup = warmup_steps(exp, total_training_steps(exp, steps_per_epoch))
        return optimizer, LinearLR(optimizer, start_factor=1 / warmup, total_iters=warmup)
    lr = REFERENCE_LR_PER_16_IMAGES * global_batch / 16
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    warmup = max(1, min(1000, steps_per_epoch - 1))  # the reference warms up over (most of) epoch 0
    return optimizer, LinearLR(optimizer, start_factor=REFERENCE_WARMUP_FACTOR, total_iters=warmup)


def to_device(images: list, targets: list[dict], device: torch.device) -> tuple[list, list[dict]]:
    """Move a detection batch to `device`."""
    images = [image.to(device, non_blocking=True) for image in images]
    targets = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]
    return images, targets


def save_checkpoint(out: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Rank 0 writes model and optimizer state to checkpoints/stepNNNNNNNN/checkpoint.pt (atomically)."""
    folder = out / "checkpoints" / f"step{step:08d}"
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / "checkpoint.pt.tmp"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}, partial)
    partial.replace(folder / "checkpoint.pt")


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: DataBundle, exp: ExperimentConfig, device: torch.device) -> dict:
    """COCO metrics on the val split (every rank predicts its shard; rank 0 computes)."""
    evaluator = CocoEvaluator(
        data.val_set.coco_ground_truth(), data.label_to_category_id, max_detections=exp.eval.max_detections
    )
    model.eval()
    for images, targets in data.val_loader:
        outputs = model([image.to(device) for image in images])
        predictions = [{k: v.cpu() for k, v in output.items()} for output in outputs]
        evaluator.update(predictions, [int(t["image_id"]) for t in targets])
    model.train()
    evaluator.synchronize()
    return evaluator.compute()


def train(exp: ExperimentConfig, recipe: str, env: DistEnv) -> None:
    """Train for exp.train's epochs / max_steps, logging like dsdet's ScalarLogHook; evaluate at the end."""
    if exp.train.grad_accum_steps != 1:
        raise DsdetError("train.grad_accum_steps: the plain DDP baseline supports only 1")
    device = torch.device(f"cuda:{env.local_rank}" if torch.cuda.is_available() else "cpu")
    out = Path(exp.train.output_dir)
    torch.manual_seed(exp.train.seed)  # identical initial weights on every rank
    data = build_data(exp, env.world_size, env.rank)
    m = exp.model
    model = build_model(m.name, data.num_classes, weights=m.weights, norm=m.norm, **m.kwargs).to(device)
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    global_batch = exp.train.batch_size * env.world_size
    optimizer, scheduler = make_optimizer(recipe, model, exp, global_batch, len(data.train_loader))
    torch.manual_seed(exp.train.seed + env.rank)
    total = total_training_steps(exp, len(data.train_loader))
    log_every, ckpt_every = max(1, exp.train.log_every_steps), exp.train.checkpoint_every_steps
    step, epoch = 0, 0
    last_step, last_time = 0, time.perf_counter()
    while step < total:
        data.batch_sampler.set_epoch(epoch)
        for images, targets in data.train_loader:
            losses = ddp(*to_device(images, targets, device))
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if env.is_main and step % log_every == 0:
                now = time.perf_counter()
                rate = (step - last_step) * global_batch / (now - last_time)
                row = {k: float(v.detach()) for k, v in losses.items()} | {"loss": float(loss.detach())}
                row |= {"lr": scheduler.get_last_lr()[0], "images_per_s": rate}
                last_step, last_time = step, now
                with (out / "train_log.jsonl").open("a") as f:
                    f.write(json.dumps({"step": step, "epoch": epoch, **row}) + "\n")
            if ckpt_every and step % ckpt_every == 0:
                if env.is_main:
                    save_checkpoint(out, step, model, optimizer)
                dist.barrier()
            if step >= total:
                break
        epoch += 1
    if exp.eval.every_epochs > 0:
        metrics = evaluate(model, data, exp, device)
        if env.is_main:
            with (out / "metrics.jsonl").open("a") as f:
                f.write(json.dumps({"epoch": epoch, "step": step, **metrics}) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Entry point for torchrun: parse, join the process group, train; user mistakes exit 2 on one line."""
    parser = argparse.ArgumentParser(
        prog="torchrun -m benchmarks.plain_ddp", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--recipe", choices=RECIPES, default="adamw", help="adamw (dsdet's) or reference (SGD)"
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="experiment overrides, as for dsdet.train"
    )
    args = parser.parse_args(argv)
    try:
        exp = load_experiment(None, args.overrides)
        env = discover_environment()
        Path(exp.train.output_dir).mkdir(parents=True, exist_ok=True)
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        try:
            train(exp, args.recipe, env)
        finally:
            dist.destroy_process_group()
    except DsdetError as exc:
        print(f"plain_ddp: error (rank {os.environ.get('RANK', '0')}): {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
