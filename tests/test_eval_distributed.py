"""Gathering predictions from a real 2-process gloo group (torchrun) gives the single-process metrics."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from dsdet.eval import CocoEvaluator
from tests.runners import free_port

NUM_IMAGES = 21  # odd, so the distributed sampler pads rank 1's shard with a repeat of image 1
LABEL_TO_CATEGORY = {1: 5, 2: 8}

WORKER = textwrap.dedent(
    """
    import json, sys
    from datetime import timedelta

    import torch
    import torch.distributed as dist
    from torch.utils.data import DistributedSampler

    from dsdet.eval import CocoEvaluator

    case_path, out_dir = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    rank = dist.get_rank()
    case = json.load(open(case_path))
    label_map = {int(label): category for label, category in case["label_to_category_id"].items()}
    evaluator = CocoEvaluator(case["gt"], label_map)
    shard = list(DistributedSampler(range(len(case["predictions"])), num_replicas=2, rank=rank, shuffle=False))
    for start in range(0, len(shard), 3):
        batch = shard[start : start + 3]
        predictions = [{k: torch.tensor(v) for k, v in case["predictions"][i].items()} for i in batch]
        evaluator.update(predictions, [case["gt"]["images"][i]["id"] for i in batch])
    evaluator.synchronize()
    report = {"shard": shard, "metrics": evaluator.compute(), "results": evaluator.results()}
    json.dump(report, open(f"{out_dir}/rank{rank}.json", "w"))
    dist.destroy_process_group()
    """
)


def random_case(seed):
    """COCO ground truth of small, medium and large objects, and jittered detections plus false positives."""
    rng = np.random.default_rng(seed)
    images, annotations, predictions = [], [], []
    for image_id in range(101, 101 + NUM_IMAGES):
        images.append({"id": image_id, "height": 200, "width": 200})
        boxes, scores, labels = [], [], []
        for side in rng.choice([20, 60, 120], size=rng.integers(1, 4)).tolist():
            x, y = rng.uniform(0, 200 - side, size=2)
            label = int(rng.integers(1, 3))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": LABEL_TO_CATEGORY[label],
                    "bbox": [x, y, side, side],
                    "area": float(side * side),
                    "iscrowd": 0,
                }
            )
            dx, dy = rng.uniform(-0.15, 0.15, size=2) * side
            boxes += [[x + dx, y + dy, x + dx + side, y + dy + side], [y, x, y + 30, x + 30]]
            scores += [float(rng.uniform(0.3, 1.0)), float(rng.uniform(0.0, 0.6))]
            labels += [label, int(rng.integers(1, 3))]
        predictions.append({"boxes": boxes, "scores": scores, "labels": labels})
    categories = [{"id": category_id, "name": str(category_id)} for category_id in LABEL_TO_CATEGORY.values()]
    return {"images": images, "annotations": annotations, "categories": categories}, predictions


def test_two_gloo_ranks_with_padded_shards_match_one_process(tmp_path: Path):
    gt, predictions = random_case(seed=3)
    case_path = tmp_path / "case.json"
    case_path.write_text(
        json.dumps({"gt": gt, "predictions": predictions, "label_to_category_id": LABEL_TO_CATEGORY})
    )
    (tmp_path / "worker.py").write_text(WORKER)
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [
        str(torchrun),
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [*command, str(tmp_path / "worker.py"), str(case_path), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1))
    assert set(rank0["shard"]) & set(rank1["shard"]) == {0}  # the padded repeat really happened

    single = CocoEvaluator(gt, LABEL_TO_CATEGORY)
    single.update(
        [{k: torch.tensor(v) for k, v in p.items()} for p in predictions], [img["id"] for img in gt["images"]]
    )
    expected = single.compute()

    assert rank0["metrics"] == pytest.approx(expected, abs=1e-12)
    assert 0.1 < expected["AP"] < 1.0
    assert rank0["results"] == json.loads(json.dumps(single.results()))
    assert len(rank0["results"]) == sum(len(p["scores"]) for p in predictions)  # no duplicates
    assert (rank1["metrics"], rank1["results"]) == ({}, [])
