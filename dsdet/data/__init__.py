"""Datasets (coco, voc, yolo) in one sample form, their transforms and loaders, and the embedded default dataset."""

from dsdet.data.build import build_dataset
from dsdet.data.dataset import DetectionDataset
from dsdet.data.default_dataset import default_dataset_dir, prepare_default_dataset
from dsdet.data.loaders import build_eval_loader, build_train_loader, collate_detection
from dsdet.data.samplers import TrainBatchSampler
from dsdet.data.transforms import build_transforms

__all__ = [
    "DetectionDataset",
    "TrainBatchSampler",
    "build_dataset",
    "build_eval_loader",
    "build_train_loader",
    "build_transforms",
    "collate_detection",
    "default_dataset_dir",
    "prepare_default_dataset",
]
