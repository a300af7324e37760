"""Distributed evaluation: every rank predicts its shard, rank 0 computes COCO metrics."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import torch
from torch import nn

from dsdet.comm import broadcast_object
from dsdet.eval import CocoEvaluator


@torch.no_grad()
def predict_batches(
    model: nn.Module,
    loader: Iterable,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
):
    """Yield (images, targets, predictions on CPU) for each batch, with the model in eval mode."""
    was_training = model.training
    model.eval()
    try:
        for images, targets in loader:
            with autocast():
                outputs = model([img.to(device) for img in images])
            predictions = [
                {k: v.float().cpu() if v.is_floating_point() else v.cpu() for k, v in o.items()}
                for o in outputs
            ]
            yield images, targets, predictions
    finally:
        model.train(was_training)


def evaluate(
    model: nn.Module,
    loader: Iterable,
    evaluator: CocoEvaluator,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    keep: int = 0,
) -> tuple[dict[str, float], list[tuple]]:
    """COCO metrics of `model` on `loader` (the same dict on every rank) and this rank's first `keep`
    (image, target, prediction) samples, for drawing."""
    samples: list[tuple] = []
    for images, targets, predictions in predict_batches(model, loader, device, autocast):
        evaluator.update(predictions, [int(t["image_id"]) for t in targets])
        samples.extend(list(zip(images, targets, predictions, strict=False))[: keep - len(samples)])
    evaluator.synchronize()
    return broadcast_object(evaluator.compute()), samples
