"""DataLoaders: list-of-images batches, seeded aspect-grouped training shards, equal-length eval shards."""

from __future__ import annotations

import random
import signal
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from dsdet.data.dataset import DetectionDataset
from dsdet.data.samplers import TrainBatchSampler, aspect_ratio_groups
from dsdet.errors import DsdetError


def collate_detection(batch: Sequence[tuple[Any, dict]]) -> tuple[list[Any], list[dict]]:
    """Keep images and targets as lists: detection images differ in size."""
    return [image for image, _ in batch], [target for _, target in batch]


def init_worker(worker_id: int) -> None:
    """Seed numpy and `random` in a loader worker from the per-worker torch seed the loader derived, and leave
    SIGTERM to the main process: launchers and schedulers signal the whole process tree on preemption, and a
    worker that died of it would make the main process raise before it could checkpoint. The loader still shuts
    its workers down, and they exit when the main process dies."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_train_loader(
    dataset: DetectionDataset,
    batch_size: int,
    *,
    world_size: int,
    rank: int,
    seed: int,
    num_workers: int = 0,
    aspect_ratio_group_factor: int = 3,
    drop_last: bool = True,
    pin_memory: bool = False,
) -> tuple[DataLoader, TrainBatchSampler]:
    """This rank's training loader and its batch sampler (call `set_epoch` / `skip` on it). Its workers live
    for the whole run (no start-up per epoch); `pin_memory` for faster copies to a GPU."""
    sizes = [dataset.image_size(i) for i in range(len(dataset))]
    batch_sampler = TrainBatchSampler(
        aspect_ratio_groups(sizes, aspect_ratio_group_factor),
        batch_size,
        world_size=world_size,
        rank=rank,
        seed=seed,
        drop_last=drop_last,
    )
    loader = DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        num_workers=num_workers,
        collate_fn=collate_detection,
        worker_init_fn=init_worker,
        generator=batch_sampler.generator,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
    )
    return loader, batch_sampler


def eval_shard(length: int, world_size: int, rank: int) -> list[int]:
    """Rank `rank`'s contiguous slice of 0..length-1, padded with repeats of the first indices to equal length."""
    if not 0 <= rank < world_size:
        raise DsdetError(f"rank {rank} is not in 0..{world_size - 1} (world_size {world_size})")
    per_rank = -(-length // world_size)
    padded = [i % length for i in range(per_rank * world_size)]
    return padded[rank * per_rank : (rank + 1) * per_rank]


def build_eval_loader(
    dataset: DetectionDataset,
    batch_size: int,
    *,
    world_size: int,
    rank: int,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """In-order loader over this rank's shard; every rank gets the same number of images and batches."""
    if batch_size < 1:
        raise DsdetError(f"batch_size must be at least 1, got {batch_size}")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=eval_shard(len(dataset), world_size, rank),
        num_workers=num_workers,
        collate_fn=collate_detection,
        worker_init_fn=init_worker,
        pin_memory=pin_memory,
    )
