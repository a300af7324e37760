"""A stock torchvision model trained with ZeRO-2 on 2 ranks: export, strict load into torchvision, eval, predict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision

from dsdet.engine.inference import load_trained_model
from dsdet.engine.predict import read_image
from tests.runners import deepspeed_train, dsdet

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def trained_run(mini_data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "run"
    deepspeed_train(
        [
            f"data.root={mini_data_dir}",
            f"train.output_dir={out}",
            "model.name=ssdlite320_mobilenet_v3_large",
            "train.batch_size=2",
            "train.epochs=1",
            "train.max_steps=3",
            "data.num_workers=0",
            "deepspeed.zero_optimization.stage=2",
        ]
    )
    return out


def test_run_wrote_everything(trained_run):
    summary = json.loads((trained_run / "summary.json").read_text())
    assert Path(summary["exported_model"]).is_file()
    assert list((trained_run / "tensorboard").glob("events.out.tfevents.*"))
    metrics = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert metrics and {"AP", "AP50", "AR100"} <= metrics[-1].keys()


def test_export_loads_strictly_into_torchvision_and_predicts_identically(
    trained_run, mini_data_dir, tmp_path
):
    out = tmp_path / "model.pt"
    dsdet("export", str(trained_run), "-o", str(out))
    meta = json.loads(out.with_suffix(".pt.json").read_text())
    stock = torchvision.models.detection.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=meta["model"]["num_classes"]
    )
    stock.load_state_dict(torch.load(out, weights_only=True), strict=True)
    stock.eval()
    ours = load_trained_model(trained_run).model
    images = [read_image(p) for p in sorted((mini_data_dir / "images" / "val").glob("*.jpg"))[:2]]
    with torch.no_grad():
        for a, b in zip(stock(images), ours(images), strict=True):
            for key in ("boxes", "scores", "labels"):
                assert torch.equal(a[key], b[key]), key


def test_eval_same_map_from_checkpoint_and_export(trained_run, mini_data_dir, tmp_path):
    exported = tmp_path / "m.pt"
    dsdet("export", str(trained_run), "-o", str(exported))
    exp = [f"data.root={mini_data_dir}"]
    results = []
    for ckpt in (trained_run, exported):
        out = tmp_path / f"metrics_{Path(ckpt).name}.json"
        dsdet("eval", *exp, "--checkpoint", str(ckpt), "--json", str(out))
        results.append(json.loads(out.read_text()))
    assert results[0] == results[1]
    assert results[0]["AP"] >= 0.0


def test_predict_writes_json_and_images(trained_run, mini_data_dir, tmp_path):
    images = sorted((mini_data_dir / "images" / "val").glob("*.jpg"))[:2]
    dsdet(
        "predict",
        "--checkpoint",
        str(trained_run),
        "--out",
        str(tmp_path),
        "--score-threshold",
        "0.0",
        *map(str, images),
    )
    detections = json.loads((tmp_path / "detections.json").read_text())
    assert all({"file_name", "category_id", "bbox", "score"} <= d.keys() for d in detections)
    assert len(list(tmp_path.glob("*_pred.jpg"))) == 2
