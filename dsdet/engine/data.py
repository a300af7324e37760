"""Map the experiment's data section to datasets and sharded loaders for this rank."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch.utils.data import DataLoader

from dsdet.config import ExperimentConfig
from dsdet.data import (
    DetectionDataset,
    build_dataset,
    build_eval_loader,
    build_train_loader,
    build_transforms,
    prepare_default_dataset,
)
from dsdet.engine.cpu import on_cpu
from dsdet.errors import DsdetError
from dsdet.models.registry import model_info


@dataclass
class DataBundle:
    """Datasets and this rank's loaders."""

    train_set: DetectionDataset
    val_set: DetectionDataset
    train_loader: DataLoader
    batch_sampler: Any
    val_loader: DataLoader
    batch_size: int

    @property
    def num_classes(self) -> int:
        return self.train_set.num_classes

    @property
    def class_names(self) -> list[str]:
        return list(self.train_set.class_names)

    @property
    def label_to_category_id(self) -> dict[int, int]:
        return dict(self.train_set.label_to_category_id)


def dataset_root(exp: ExperimentConfig) -> str:
    """The data root; the embedded default dataset is prepared on first use (a file lock serialises ranks)."""
    return str(exp.data.root) if exp.data.root is not None else str(prepare_default_dataset())


def build_datasets(exp: ExperimentConfig, root: str) -> tuple[DetectionDataset, DetectionDataset]:
    """Train and val datasets with their transforms."""
    d = exp.data
    augment = [item.model_dump() for item in d.augment]
    with_masks = (
        "masks" in model_info(exp.model.name).targets
    )  # instance masks only where a model learns them
    train_set, val_set = (
        build_dataset(
            d.format,
            root,
            split.images,
            split.annotations,
            d.classes,
            build_transforms(augment, train=is_train),
            with_masks=with_masks,
        )
        for split, is_train in ((d.train, True), (d.val, False))
    )
    if train_set.class_names != val_set.class_names:
        raise DsdetError(
            f"train and val splits under {root} have different classes: {train_set.class_names} vs {val_set.class_names}"
        )
    num_classes = exp.model.num_classes
    if num_classes != "auto" and num_classes != train_set.num_classes:
        raise DsdetError(
            f"model.num_classes={num_classes} but the dataset has {train_set.num_classes - 1} classes "
            f"(+1 background = {train_set.num_classes}); set model.num_classes=auto"
        )
    return train_set, val_set


def build_data(exp: ExperimentConfig, world_size: int, rank: int) -> DataBundle:
    """Datasets plus train/val loaders sharded over `world_size` data-parallel ranks, for `rank`."""
    train_set, val_set = build_datasets(exp, dataset_root(exp))
    batch_size = exp.train.batch_size
    pin_memory = not on_cpu()  # page-locked batches copy to a GPU asynchronously
    train_loader, batch_sampler = build_train_loader(
        train_set,
        batch_size,
        world_size=world_size,
        rank=rank,
        seed=exp.train.seed,
        num_workers=exp.data.num_workers,
        aspect_ratio_group_factor=exp.data.aspect_ratio_group_factor,
        pin_memory=pin_memory,
    )
    if len(train_loader) == 0:
        raise DsdetError(
            f"the train split has {len(train_set)} images: too few for train.batch_size={batch_size} "
            f"on {world_size} ranks; lower train.batch_size"
        )
    val_loader = build_eval_loader(
        val_set,
        exp.eval.batch_size or batch_size,
        world_size=world_size,
        rank=rank,
        num_workers=exp.data.num_workers,
        pin_memory=pin_memory,
    )
    return DataBundle(train_set, val_set, train_loader, batch_sampler, val_loader, batch_size)
