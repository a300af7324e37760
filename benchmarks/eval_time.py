"""Time of COCO bbox metrics on the val split: dsdet's faster-coco-eval backend vs pycocotools."""

from __future__ import annotations

import copy
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.context import Context, Section
from benchmarks.measure import fmt
from benchmarks.plots import grouped_bars
from dsdet.data import build_dataset, build_transforms, prepare_default_dataset
from dsdet.eval import CocoEvaluator

BACKENDS = ("faster_coco_eval", "pycocotools")
DETECTIONS_PER_IMAGE = 100  # a detector's usual cap (eval.max_detections)
SCALES = (1, 10)  # the val split, and ten copies of it under new image ids


def scaled_ground_truth(coco: dict, copies: int) -> dict:
    """`copies` copies of a COCO ground truth, each under new image and annotation ids."""
    if copies == 1:
        return coco
    step_image = max(image["id"] for image in coco["images"]) + 1
    step_ann = max((ann["id"] for ann in coco["annotations"]), default=0) + 1
    images, annotations = [], []
    for copy_index in range(copies):
        images += [{**image, "id": image["id"] + copy_index * step_image} for image in coco["images"]]
        annotations += [
            {
                **ann,
                "id": ann["id"] + copy_index * step_ann,
                "image_id": ann["image_id"] + copy_index * step_image,
            }
            for ann in coco["annotations"]
        ]
    return {**coco, "images": images, "annotations": annotations}


def detections(coco: dict, category_to_label: dict[int, int], seed: int = 0) -> dict[int, dict]:
    """Per image, DETECTIONS_PER_IMAGE boxes: each ground-truth box jittered (sometimes mislabelled), then
    random low-scoring boxes, like a half-trained detector's output."""
    rng = np.random.default_rng(seed)
    labels = sorted(category_to_label.values())
    by_image: dict[int, list[dict]] = {image["id"]: [] for image in coco["images"]}
    for ann in coco["annotations"]:
        by_image[ann["image_id"]].append(ann)
    sizes = {image["id"]: (image["width"], image["height"]) for image in coco["images"]}
    out = {}
    for image_id, anns in by_image.items():
        width, height = sizes[image_id]
        boxes, scores, classes = [], [], []
        for ann in anns[:DETECTIONS_PER_IMAGE]:
            x, y, w, h = ann["bbox"]
            jitter = rng.normal(0, 0.1, 4) * [w, h, w, h]
            boxes.append([x + jitter[0], y + jitter[1], x + w + jitter[2], y + h + jitter[3]])
            scores.append(rng.uniform(0.3, 1.0))
            right = category_to_label[ann["category_id"]]
            classes.append(right if rng.random() < 0.8 else int(rng.choice(labels)))
        extra = DETECTIONS_PER_IMAGE - len(boxes)
        corners = rng.uniform(0, 1, (extra, 2)) * [width, height]
        spans = rng.uniform(8, 96, (extra, 2))
        boxes += np.concatenate([corners, np.minimum(corners + spans, [width, height])], axis=1).tolist()
        scores += rng.uniform(0.0, 0.5, extra).tolist()
        classes += rng.choice(labels, extra).tolist()
        out[image_id] = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).clamp(min=0),
            "scores": torch.tensor(scores, dtype=torch.float32),
            "labels": torch.tensor(classes, dtype=torch.int64),
        }
    return out


def time_backend(
    coco: dict, label_to_category_id: dict, predictions: dict, backend: str
) -> tuple[float, float]:
    """Seconds of `CocoEvaluator.compute()` (indexing, matching, accumulating) and the AP it gives."""
    evaluator = CocoEvaluator(
        coco, label_to_category_id, backend=backend, max_detections=DETECTIONS_PER_IMAGE
    )
    evaluator.update(list(predictions.values()), list(predictions))
    start = time.perf_counter()
    metrics = evaluator.compute()
    return time.perf_counter() - start, metrics["AP"]


def val_ground_truth(data_root: Path | None) -> tuple[dict, dict[int, int]]:
    """COCO ground truth and label map of the val split."""
    root = data_root or prepare_default_dataset()
    val = build_dataset(
        "coco", root, "images/val", "annotations/val.json", None, build_transforms([], train=False)
    )
    return val.coco_ground_truth(), val.label_to_category_id


def run(ctx: Context) -> Section:
    """Time both backends alternately on the val split and a 10x copy of it."""
    base, label_to_category_id = val_ground_truth(ctx.data_root)
    category_to_label = {c: label for label, c in label_to_category_id.items()}
    scales = SCALES if ctx.budget.mode == "full" else SCALES[:1]
    lines = [
        f"`dsdet.eval.CocoEvaluator(...).compute()` (bbox) with {DETECTIONS_PER_IMAGE} synthetic detections per "
        f"image (jittered ground truth plus random boxes), median of {ctx.budget.eval_repeats} alternating "
        "runs per backend, in this process.",
        "",
        "| images | detections | faster-coco-eval (s) | pycocotools (s) | pycocotools / faster-coco-eval | same AP |",
        "| ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    rows = []
    for copies in scales:
        coco = scaled_ground_truth(copy.deepcopy(base), copies)
        predictions = detections(coco, category_to_label)
        times: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
        aps: dict[str, float] = {}
        for _ in range(ctx.budget.eval_repeats):
            for backend in BACKENDS:
                seconds, aps[backend] = time_backend(coco, label_to_category_id, predictions, backend)
                times[backend].append(seconds)
        medians = {backend: statistics.median(values) for backend, values in times.items()}
        same = abs(aps["faster_coco_eval"] - aps["pycocotools"]) < 1e-6
        row = {
            "images": len(coco["images"]),
            "medians_s": medians,
            "times_s": times,
            "AP": aps,
            "same_AP": same,
        }
        rows.append(row)
        lines.append(
            f"| {row['images']} | {row['images'] * DETECTIONS_PER_IMAGE:,} | {fmt(medians['faster_coco_eval'], 3)} "
            f"| {fmt(medians['pycocotools'], 3)} | {fmt(medians['pycocotools'] / medians['faster_coco_eval'])} "
            f"| {'yes' if same else 'no: ' + str(aps)} |"
        )
    plot = grouped_bars(
        ctx.images_dir / "bench_eval_time.png",
        "COCO bbox metrics: seconds per evaluation",
        "seconds",
        [f"{row['images']} images" for row in rows],
        {backend: [row["medians_s"][backend] for row in rows] for backend in BACKENDS},
    )
    return Section("COCO evaluation time", lines, [plot], {"rows": rows})
