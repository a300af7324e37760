"""Training batches: a rank's shard of a seeded shuffle, grouped by aspect ratio, resumable mid-epoch."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DistributedSampler, Sampler

from dsdet.errors import DsdetError


def aspect_ratio_groups(sizes: Sequence[tuple[int, int]], group_factor: int) -> list[int]:
    """Group id per image from width/height, in 2 * group_factor + 2 log-spaced bins; all 0 when factor < 0."""
    if group_factor < 0:
        return [0] * len(sizes)
    edges = 2.0 ** np.linspace(-1, 1, 2 * group_factor + 1)
    ratios = np.array([w / h for h, w in sizes], dtype=np.float64)
    return np.digitize(ratios, edges).tolist()


def grouped_batches(
    indices: Sequence[int], group_ids: Sequence[int], batch_size: int, drop_last: bool
) -> list[list[int]]:
    """Batches of one aspect group each, in the order they fill; the leftovers are batched together at the end."""
    open_batches: dict[int, list[int]] = {}
    batches = []
    for index in indices:
        batch = open_batches.setdefault(group_ids[index], [])
        batch.append(index)
        if len(batch) == batch_size:
            batches.append(open_batches.pop(group_ids[index]))
    leftovers = [index for batch in open_batches.values() for index in batch]
    for start in range(0, len(leftovers), batch_size):
        tail = leftovers[start : start + batch_size]
        if len(tail) == batch_size or not drop_last:
            batches.append(tail)
    return batches


# A dataset index with the seed of its augmentations: the same sample is augmented alike whichever loader worker,
# rank or resumed run draws it.
SeededIndex = tuple[int, int]


def seed_for(*parts: int) -> int:
    """A 63-bit seed mixed from integers (seed, epoch, rank...), stable across processes and Python versions."""
    digest = hashlib.sha256(",".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class TrainBatchSampler(Sampler[list[SeededIndex]]):
    """This rank's batches of an epoch; `set_epoch` reshuffles, `skip(n)` starts the next pass at batch n."""

    def __init__(
        self,
        group_ids: Sequence[int],
        batch_size: int,
        *,
        world_size: int,
        rank: int,
        seed: int,
        drop_last: bool = True,
    ) -> None:
        if batch_size < 1:
            raise DsdetError(f"batch_size must be at least 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise DsdetError(f"rank {rank} is not in 0..{world_size - 1} (world_size {world_size})")
        self.group_ids = list(group_ids)
        self.batch_size = batch_size
        self.rank = rank
        self.seed = seed
        self.drop_last = drop_last
        # Pads by repeating so every rank holds ceil(N / world_size) indices, hence the same number of batches.
        self.sampler = DistributedSampler(
            range(len(self.group_ids)), num_replicas=world_size, rank=rank, shuffle=True, seed=seed
        )
        self.generator = torch.Generator()
        self.epoch = 0
        self.step_size = 1
        self._skip = 0
        self.set_epoch(0)

    def whole_steps_of(self, micro_batches: int) -> None:
        """End every epoch on an optimizer step of `micro_batches` micro-batches: the last
        `len % micro_batches` batches of each epoch are left out (each epoch reshuffles, so no image is
        always left out)."""
        if micro_batches < 1:
            raise DsdetError(f"an optimizer step needs at least 1 micro-batch, got {micro_batches}")
        if self.batches_per_pass() < micro_batches:
            raise DsdetError(
                f"an epoch has {self.batches_per_pass()} batches per rank, fewer than the {micro_batches} "
                "micro-batches of one optimizer step; lower train.grad_accum_steps or train.batch_size"
            )
        self.step_size = micro_batches

    def set_epoch(self, epoch: int) -> None:
        """Shuffle for `epoch` (same on every rank) and reseed the loader's worker-seed generator."""
        self.epoch = epoch
        self.sampler.set_epoch(epoch)
        self.generator.manual_seed(seed_for(self.seed, epoch, self.rank))

    def skip(self, batches: int) -> None:
        """Start the next iteration at batch `batches` of this epoch (mid-epoch resume)."""
        if not 0 <= batches <= len(self):
            raise DsdetError(f"cannot skip {batches} batches: the epoch has {len(self)}")
        self._skip = batches

    def epoch_batches(self) -> list[list[int]]:
        """All of this rank's batches of the current epoch, in order."""
        return grouped_batches(list(self.sampler), self.group_ids, self.batch_size, self.drop_last)

    def __iter__(self) -> Iterator[list[SeededIndex]]:
        """This epoch's batches from the skipped-to one; each index carries the seed of its augmentations."""
        start, self._skip = self._skip, 0
        for batch in self.epoch_batches()[start : len(self)]:
            yield [(index, seed_for(self.seed, self.epoch, index)) for index in batch]

    def batches_per_pass(self) -> int:
        """Batches of this rank in one pass over its shard."""
        per_rank = len(self.sampler)
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def __len__(self) -> int:
        """Batches of this rank per epoch: whole optimizer steps of one pass."""
        return self.batches_per_pass() // self.step_size * self.step_size
