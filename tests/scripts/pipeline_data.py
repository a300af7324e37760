"""Detectors and data of the pipeline tests: small torchvision models and seeded synthetic batches.

Imported by tests/test_pipeline_*.py (as tests.scripts.pipeline_data) and by tests/scripts/pipeline_ds.py.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import detection

NUM_CLASSES = 3  # two classes + background

# builder name and keyword arguments per family: tiny inputs; R-CNN samples every anchor and proposal, so its loss
# does not depend on the random generator and the plain and pipelined losses can be compared exactly.
DETECTORS = {
    "ssd": ("ssdlite320_mobilenet_v3_large", {}),
    "rcnn": (
        "fasterrcnn_mobilenet_v3_large_fpn",
        {
            "min_size": 128,
            "max_size": 128,
            "rpn_batch_size_per_image": 10**6,
            "box_batch_size_per_image": 10**6,
            "rpn_post_nms_top_n_train": 64,
        },
    ),
}
SSD_SIZE = (160, 160)  # SSDLite runs at 160² instead of 320² to keep the tests fast


def build_detector(family: str, seed: int = 0) -> nn.Module:
    """The family's torchvision detector, from scratch with seeded weights, in training mode."""
    name, kwargs = DETECTORS[family]
    torch.manual_seed(seed)
    model = getattr(detection, name)(weights=None, weights_backbone=None, num_classes=NUM_CLASSES, **kwargs)
    if family == "ssd":
        model.transform.fixed_size = SSD_SIZE
    return model.train()


def synthetic_batch(seed: int, batch_size: int = 2, height: int = 128, width: int = 128) -> tuple[list, list]:
    """Dim noise images with one bright rectangle per class (class c lights channel c-1) and their boxes."""
    generator = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(batch_size):
        image = torch.rand(3, height, width, generator=generator) * 0.3
        boxes = []
        for label in range(1, NUM_CLASSES):
            x0 = int(torch.randint(0, width // 2, (1,), generator=generator))
            y0 = int(torch.randint(0, height // 2, (1,), generator=generator))
            w = int(torch.randint(width // 4, width // 2, (1,), generator=generator))
            h = int(torch.randint(height // 4, height // 2, (1,), generator=generator))
            image[label - 1, y0 : y0 + h, x0 : x0 + w] = 1.0
            boxes.append([x0, y0, x0 + w, y0 + h])
        images.append(image)
        labels = torch.arange(1, NUM_CLASSES, dtype=torch.int64)
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": labels})
    return images, targets
