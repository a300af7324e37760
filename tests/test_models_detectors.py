"""Every registered detector: builds from scratch, trains a step with and without boxes, detects, reloads weights."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision

from dsdet.models import build_model, list_models
from tests.test_models_support import (
    IMAGE_SIZES,
    MODEL_TEST_KWARGS,
    NUM_CLASSES,
    one_thread,  # noqa: F401  (fixture)
    tiny_images,
    tiny_targets,
)

pytestmark = pytest.mark.usefixtures("one_thread")

MODEL_NAMES = [info.name for info in list_models()]
STOCK_NAMES = [info.name for info in list_models() if info.stock]
FAMILIES = {info.name: info.family for info in list_models()}


def _build(name: str, seed: int, **extra) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(name, NUM_CLASSES, **MODEL_TEST_KWARGS[name], **extra)


def _assert_finite_losses(losses: dict) -> torch.Tensor:
    assert isinstance(losses, dict) and losses
    for key, value in losses.items():
        assert value.ndim == 0 and math.isfinite(float(value.detach())), f"{key} = {value}"
    return sum(losses.values())


def _detect(model: torch.nn.Module) -> list[dict]:
    model.eval()
    with torch.no_grad():
        return model(tiny_images())


def test_every_model_has_test_settings():
    assert sorted(MODEL_TEST_KWARGS) == sorted(MODEL_NAMES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_trains_from_scratch_with_and_without_boxes(name):
    model = _build(name, seed=0)
    model.train()
    before = {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    _assert_finite_losses(model(tiny_images(), tiny_targets())).backward()
    optimizer.step()
    changed = [k for k, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[k])]
    assert len(changed) > len(before) // 2, f"only {len(changed)} of {len(before)} parameters moved"

    optimizer.zero_grad()
    negatives = _assert_finite_losses(model(tiny_images(), tiny_targets(with_boxes=False)))
    negatives.backward()
    gradient = sum(float(p.grad.abs().sum()) for p in model.parameters() if p.grad is not None)
    if FAMILIES[name] == "ssd":
        # torchvision's SSD mines 3 negatives per positive: an image without boxes adds nothing.
        assert float(negatives.detach()) == 0 and gradient == 0
    else:
        assert gradient > 0


def _assert_well_formed(name: str, detections: list[dict]) -> None:
    # torchvision's RetinaNet and FCOS score label 0 like any class; it never gets positives, so only an
    # untrained model (with score_thresh 0) emits it.
    lowest_label = 0 if FAMILIES[name] in ("retinanet", "fcos") else 1
    assert len(detections) == len(IMAGE_SIZES)
    for det, (height, width) in zip(detections, IMAGE_SIZES, strict=True):
        boxes, scores, labels = det["boxes"], det["scores"], det["labels"]
        n = len(boxes)
        assert n > 0
        assert boxes.shape == (n, 4) and boxes.dtype == torch.float32
        assert scores.shape == (n,) and bool(((scores >= 0) & (scores <= 1)).all())
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert bool(((labels >= lowest_label) & (labels < NUM_CLASSES)).all())
        assert bool((boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all())
        assert float(boxes[:, :2].min()) >= 0
        assert float(boxes[:, 2].max()) <= width + 1e-3 and float(boxes[:, 3].max()) <= height + 1e-3
        # Boxes reach beyond the model's (smaller) resized frame: they were mapped back to the input image.
        assert max(float(boxes[:, 2].max()) / width, float(boxes[:, 3].max()) / height) > 0.85


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_detections_in_input_coordinates_and_weights_round_trip(name, tmp_path):
    original = _build(name, seed=0)
    expected = _detect(original)
    _assert_well_formed(name, expected)

    path = tmp_path / f"{name}.pt"
    torch.save(original.state_dict(), path)
    reloaded = _build(name, seed=1, weights=path)
    for want, got in zip(expected, _detect(reloaded), strict=True):
        for key in ("boxes", "scores", "labels"):
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)


@pytest.mark.parametrize("name", STOCK_NAMES)
def test_stock_weights_load_strictly_into_torchvision(name, tmp_path):
    kwargs = MODEL_TEST_KWARGS[name]
    path = tmp_path / f"{name}.pt"
    torch.save(_build(name, seed=0).state_dict(), path)
    builder = getattr(torchvision.models.detection, name)
    stock = builder(weights=None, weights_backbone=None, num_classes=NUM_CLASSES, **kwargs)
    stock.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    expected = _detect(build_model(name, NUM_CLASSES, weights=path, **kwargs))
    for want, got in zip(expected, _detect(stock), strict=True):
        torch.testing.assert_close(got["boxes"], want["boxes"], rtol=0, atol=0)
