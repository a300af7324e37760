"""Every registered model trains a few steps on the embedded default dataset and then predicts."""

from __future__ import annotations

import pytest
import torch

from dsdet.config import load_experiment
from dsdet.data import build_dataset, build_train_loader, build_transforms
from dsdet.models import build_model, list_models
from tests.test_models_support import MODEL_TEST_KWARGS

TRAINED_AS = load_experiment(None, [])  # as dsdet.train builds models on CPU: channels-last, sparse RoIAlign


@pytest.fixture(scope="module")
def default_batches(default_data_dir):
    """Three batches of two augmented training images of the default dataset (with masks for Mask R-CNN)."""
    dataset = build_dataset(
        "coco",
        default_data_dir,
        "images/train",
        "annotations/train.json",
        transforms=build_transforms([{"name": "hflip", "p": 0.5}], train=True),
        with_masks=True,
    )
    loader, _ = build_train_loader(dataset, 2, world_size=1, rank=0, seed=0)
    batches = [batch for _, batch in zip(range(3), loader, strict=False)]
    return dataset.num_classes, batches


@pytest.mark.parametrize("name", [info.name for info in list_models()])
def test_trains_on_default_dataset_and_predicts(name, default_batches):
    num_classes, batches = default_batches
    torch.manual_seed(0)
    model = build_model(
        name,
        num_classes,
        channels_last=TRAINED_AS.model.channels_last,
        roi_align=TRAINED_AS.train.cpu.roi_align,
        **MODEL_TEST_KWARGS[name],
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for images, targets in batches:
        losses = model(images, targets)
        loss = sum(losses.values())
        assert torch.isfinite(loss), (name, losses)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        predictions = model(batches[0][0])
    assert len(predictions) == 2
    for prediction, image in zip(predictions, batches[0][0], strict=True):
        boxes = prediction["boxes"]
        assert boxes.ndim == 2 and boxes.shape[1] == 4 and len(prediction["scores"]) == len(boxes)
        if len(boxes):
            assert boxes[:, 2].max() <= image.shape[-1] + 1e-3 and boxes[:, 3].max() <= image.shape[-2] + 1e-3
