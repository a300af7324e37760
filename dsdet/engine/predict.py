"""`dsdet predict`: detections as COCO-style JSON and images with boxes drawn."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2.functional import pil_to_tensor, to_pil_image

from dsdet.engine.inference import load_trained_model
from dsdet.errors import DsdetError
from dsdet.eval import draw_detections


def read_image(path: Path) -> torch.Tensor:
    """An RGB float image in [0, 1], CHW."""
    try:
        with Image.open(path) as img:
            return pil_to_tensor(img.convert("RGB")).float() / 255.0
    except (FileNotFoundError, UnidentifiedImageError, OSError) as exc:
        raise DsdetError(f"cannot read image {path}: {exc}") from None


@torch.no_grad()
def predict_images(
    checkpoint: str | Path, images: Sequence[str | Path], out_dir: Path, score_threshold: float = 0.3
) -> Path:
    """Run the model on each image; write `out_dir/detections.json` and `out_dir/<name>.jpg`; return the JSON path."""
    trained = load_trained_model(checkpoint)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for path in map(Path, images):
        image = read_image(path)
        prediction = {k: v.cpu() for k, v in trained.model([image.to(trained.device)])[0].items()}
        keep = prediction["scores"] >= score_threshold
        prediction = {k: v[keep] for k, v in prediction.items()}
        for box, score, label in zip(
            prediction["boxes"].tolist(),
            prediction["scores"].tolist(),
            prediction["labels"].tolist(),
            strict=False,
        ):
            x1, y1, x2, y2 = box
            results.append(
                {
                    "file_name": str(path),
                    "category_id": trained.label_to_category_id[int(label)],
                    "category": trained.class_names[int(label) - 1],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                }
            )
        drawn = draw_detections(image, prediction, None, trained.class_names, score_threshold=score_threshold)
        to_pil_image(drawn).save(out_dir / f"{path.stem}_pred.jpg")
    out = out_dir / "detections.json"
    out.write_text(json.dumps(results, indent=1))
    return out
