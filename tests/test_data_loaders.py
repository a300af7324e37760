"""Batching: seeded, aspect-grouped, resumable training shards and equal-length eval shards on every rank."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dsdet.data import (
    TrainBatchSampler,
    build_dataset,
    build_eval_loader,
    build_train_loader,
    build_transforms,
    collate_detection,
)
from dsdet.data.samplers import aspect_ratio_groups, grouped_batches
from dsdet.errors import DsdetError

GROUPS = [0, 1, 0, 0, 1, 2, 1, 0, 2, 2, 0, 1, 0, 1, 2, 0, 0, 1, 2, 0, 1, 1, 0]  # 23 images


def sampler(rank=0, world_size=2, seed=5, batch_size=3, drop_last=True, groups=GROUPS):
    return TrainBatchSampler(
        groups, batch_size, world_size=world_size, rank=rank, seed=seed, drop_last=drop_last
    )


def indices(batches) -> list[list[int]]:
    """The dataset indices of batches of (index, augmentation seed) pairs."""
    return [[index for index, _ in batch] for batch in batches]


def write_sized_coco(root: Path, sizes: list[tuple[int, int]]) -> Path:
    """A COCO dataset of images of the given (h, w), each with one centred box."""
    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    for k, (h, w) in enumerate(sizes, start=1):
        Image.fromarray(np.full((h, w, 3), 10 * k, dtype=np.uint8)).save(root / "images" / f"{k}.png")
        images.append({"id": k, "file_name": f"{k}.png", "height": h, "width": w})
        annotations.append(
            {"id": k, "image_id": k, "category_id": 1, "bbox": [w / 4, h / 4, w / 2, h / 2], "iscrowd": 0}
        )
    coco = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}
    (root / "train.json").write_text(json.dumps(coco))
    return root


def test_aspect_ratio_groups():
    sizes = [(100, 100), (100, 300), (300, 100), (100, 110), (100, 190)]  # (h, w)
    assert aspect_ratio_groups(sizes, 1) == [2, 3, 0, 2, 2]  # bins at w/h = 0.5, 1, 2
    assert aspect_ratio_groups(sizes, 0) == [1, 1, 0, 1, 1]  # portrait | landscape
    assert aspect_ratio_groups(sizes, -1) == [0] * 5


def test_grouped_batches_use_each_index_once_and_keep_groups():
    indices = list(np.random.default_rng(0).permutation(len(GROUPS)))
    batches = grouped_batches(indices, GROUPS, 3, drop_last=False)
    assert sorted(i for b in batches for i in b) == sorted(indices)
    full = [b for b in batches if len(b) == 3]
    assert len(full) == len(GROUPS) // 3
    one_group = [b for b in batches if len({GROUPS[i] for i in b}) == 1]
    assert len(one_group) >= len(batches) - 3  # only the leftover batches at the end may mix
    assert len(grouped_batches(indices, GROUPS, 3, drop_last=True)) == len(GROUPS) // 3


def test_same_seed_same_batches_and_set_epoch_reshuffles():
    first, second = sampler(), sampler()
    assert list(first) == list(second)
    epoch0 = list(first)
    first.set_epoch(1)
    assert list(first) != epoch0
    first.set_epoch(0)
    assert list(first) == epoch0
    assert list(sampler(seed=6)) != epoch0


@pytest.mark.parametrize("n", [0, 1, 3, 4])
def test_skip_gives_exactly_the_tail_once(n):
    batch_sampler = sampler()
    batch_sampler.set_epoch(3)
    full = list(batch_sampler)
    assert len(full) == len(batch_sampler) == 4
    batch_sampler.skip(n)
    assert list(batch_sampler) == full[n:]
    assert list(batch_sampler) == full  # the skip applies to one pass only


def test_augmentation_seeds_depend_on_sample_and_epoch_only():
    batch_sampler = sampler()
    batch_sampler.set_epoch(2)
    full = list(batch_sampler)
    batch_sampler.skip(2)
    assert list(batch_sampler) == full[2:]  # a resumed pass gets the same seeds for the same samples
    seeds = {seed for batch in full for _, seed in batch}
    assert len(seeds) == sum(len(batch) for batch in full)
    other_rank = sampler(rank=1)
    other_rank.set_epoch(2)
    shared = {index for batch in indices(other_rank) for index in batch} & {i for b in indices(full) for i in b}
    mine = {index: seed for batch in full for index, seed in batch}
    assert all(mine[index] == seed for batch in other_rank for index, seed in batch if index in shared)


@pytest.mark.parametrize(("length", "step", "expected"), [(4, 1, 4), (4, 3, 3), (4, 4, 4), (4, 2, 4)])
def test_whole_steps_trim_each_epoch(length, step, expected):
    batch_sampler = sampler()
    assert len(batch_sampler) == length
    batch_sampler.whole_steps_of(step)
    assert len(batch_sampler) == len(list(batch_sampler)) == expected
    with pytest.raises(DsdetError, match="fewer than the 5 micro-batches of one optimizer step"):
        batch_sampler.whole_steps_of(5)


def test_skip_past_the_epoch_is_an_error():
    with pytest.raises(DsdetError, match=r"^cannot skip 5 batches: the epoch has 4$"):
        sampler().skip(5)


@pytest.mark.parametrize(
    ("length", "world_size", "batch_size", "drop_last"),
    [(23, 2, 3, True), (23, 3, 2, False), (24, 2, 4, True), (5, 4, 1, True)],
)
def test_rank_shards_are_disjoint_and_equally_long(length, world_size, batch_size, drop_last):
    groups = GROUPS[:length] if length <= len(GROUPS) else GROUPS * 2
    ranks = [
        sampler(rank, world_size, batch_size=batch_size, drop_last=drop_last, groups=groups[:length])
        for rank in range(world_size)
    ]
    per_rank = [indices(r) for r in ranks]
    assert len({len(r) for r in ranks}) == 1 and [len(b) for b in per_rank] == [len(r) for r in ranks]
    seen = [{i for b in batches for i in b} for batches in per_rank]
    padded = -(-length // world_size) * world_size - length  # DistributedSampler repeats this many
    assert sum(len(s) for s in seen) <= length + padded
    if padded == 0 and drop_last is False:
        assert set.union(*seen) == set(range(length))
    for a in range(world_size):
        for b in range(a + 1, world_size):
            assert len(seen[a] & seen[b]) <= padded


def test_train_loader_batches_are_lists_and_seeded_per_epoch_and_worker(tmp_path):
    sizes = [(20, 30), (30, 20), (20, 32), (32, 20), (24, 24)] * 2
    root = write_sized_coco(tmp_path, sizes)
    dataset = build_dataset(
        "coco",
        root,
        "images",
        "train.json",
        transforms=build_transforms([{"name": "brightness", "factor": 0.5}], True),
    )

    def epoch_images(epoch, rank=0, workers=2):
        loader, batch_sampler = build_train_loader(
            dataset, 2, world_size=2, rank=rank, seed=1, num_workers=workers
        )
        batch_sampler.set_epoch(epoch)
        return loader, [
            (t["image_id"], img) for images, targets in loader for img, t in zip(images, targets, strict=True)
        ]

    loader, first = epoch_images(0)
    _, again = epoch_images(0)
    _, without_workers = epoch_images(0, workers=0)
    _, later = epoch_images(1)
    assert len(loader) == 2 and len(first) == 4
    assert [i for i, _ in first] == [i for i, _ in again] == [i for i, _ in without_workers]
    # same seed, epoch and sample: the same augmentation, whichever worker (or none) draws it
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(first, again, strict=True))
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(first, without_workers, strict=True))
    assert [i for i, _ in first] != [i for i, _ in later]
    other_rank, _ = epoch_images(0, rank=1, workers=0)
    assert len(other_rank) == len(loader)
    images, targets = next(iter(loader))
    assert isinstance(images, list) and isinstance(targets, list) and len(images) == len(targets) == 2
    assert {tuple(img.shape[-2:]) for img in images} <= set(sizes)


def test_eval_shards_are_contiguous_and_equal_length(tmp_path):
    dataset = build_dataset("coco", write_sized_coco(tmp_path, [(20, 20)] * 7), "images", "train.json")
    shards = []
    for rank in range(3):
        loader = build_eval_loader(dataset, 2, world_size=3, rank=rank)
        assert len(loader) == 2
        shards.append([t["image_id"] for _, targets in loader for t in targets])
    assert shards == [[1, 2, 3], [4, 5, 6], [7, 1, 2]]
    assert [
        t["image_id"] for _, ts in build_eval_loader(dataset, 4, world_size=1, rank=0) for t in ts
    ] == list(range(1, 8))


def test_collate_keeps_lists():
    batch = [(torch.zeros(3, 4, 5), {"image_id": 1}), (torch.zeros(3, 6, 2), {"image_id": 2})]
    images, targets = collate_detection(batch)
    assert [tuple(i.shape) for i in images] == [(3, 4, 5), (3, 6, 2)]
    assert [t["image_id"] for t in targets] == [1, 2]
