"""A short single-process training run on coloured squares: the loss falls and the squares get found."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import box_iou

from dsdet.models import build_model
from tests.test_models_support import one_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

COLOURS = torch.tensor([[1.0, 0.1, 0.1], [0.1, 1.0, 0.1]])  # label 1 red, label 2 green
IMAGE_SIZE = 96
STEPS = 50
LEARNING_RATE = 2e-3
BATCH = 4


def coloured_squares(n: int, seed: int) -> list[tuple[torch.Tensor, dict]]:
    """`n` noise images, each with one or two red or green squares and their boxes and labels."""
    g = torch.Generator().manual_seed(seed)

    def draw(high: int, low: int = 0) -> int:
        return int(torch.randint(low, high, (1,), generator=g))

    samples = []
    for _ in range(n):
        image = torch.rand(3, IMAGE_SIZE, IMAGE_SIZE, generator=g) * 0.5
        boxes, labels = [], []
        for _ in range(draw(3, 1)):
            side = draw(40, 16)
            x, y, colour = draw(IMAGE_SIZE - side), draw(IMAGE_SIZE - side), draw(2)
            image[:, y : y + side, x : x + side] = COLOURS[colour].view(3, 1, 1)
            boxes.append([x, y, x + side, y + side])
            labels.append(colour + 1)
        samples.append(
            (image, {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)})
        )
    return samples


@pytest.mark.parametrize("name", ["tinyssd", "yolo"])
def test_loss_falls_and_squares_are_found(name):
    torch.manual_seed(0)
    data = coloured_squares(16, seed=0)
    model = build_model(name, 3, image_size=IMAGE_SIZE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    model.train()
    losses = []
    for step in range(STEPS):
        batch = [data[(step * BATCH + i) % len(data)] for i in range(BATCH)]
        loss = sum(model([image for image, _ in batch], [target for _, target in batch]).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.5 * first, f"loss went from {first:.2f} to {last:.2f}"

    model.eval()
    with torch.no_grad():
        detections = model([image for image, _ in data[:8]])
    found = total = 0
    for (_, target), det in zip(data[:8], detections, strict=True):
        confident = det["scores"] > 0.3
        iou = box_iou(target["boxes"], det["boxes"][confident])
        same_label = target["labels"][:, None] == det["labels"][confident][None, :]
        found += int(((iou > 0.5) & same_label).any(dim=1).sum())
        total += len(target["boxes"])
    assert found >= 0.7 * total, f"found {found} of {total} squares"
