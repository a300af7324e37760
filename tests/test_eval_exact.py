"""COCO metrics on hand-made cases whose answer is worked out by hand."""

import pytest
import torch

from dsdet.eval import METRIC_NAMES, CocoEvaluator, format_metrics

BACKENDS = ["faster_coco_eval", "pycocotools"]
CATEGORIES = [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 9, "name": "bird"}]
LABEL_TO_CATEGORY = {1: 7, 2: 3, 3: 9}


def annotation(ann_id, image_id, category_id, xywh, iscrowd=0):
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": list(xywh),
        "area": float(xywh[2] * xywh[3]),
        "iscrowd": iscrowd,
    }


def ground_truth(annotations, num_images=1):
    images = [
        {"id": i, "height": 200, "width": 200, "file_name": f"{i}.jpg"} for i in range(1, num_images + 1)
    ]
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}


def prediction(boxes_xyxy, scores, labels):
    return {
        "boxes": torch.tensor(boxes_xyxy, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def evaluate(gt, predictions, image_ids, backend):
    evaluator = CocoEvaluator(gt, LABEL_TO_CATEGORY, backend=backend)
    evaluator.update(predictions, image_ids)
    evaluator.synchronize()
    return evaluator.compute(), evaluator.results()


@pytest.mark.parametrize("backend", BACKENDS)
def test_perfect_predictions_score_one_and_map_labels_to_category_ids(backend):
    # cat (label 1 -> id 7): a small and a large box; dog (label 2 -> id 3): a medium box, on a second image.
    gt = ground_truth(
        [
            annotation(1, 1, 7, (10, 10, 20, 20)),
            annotation(2, 1, 7, (50, 50, 120, 110)),
            annotation(3, 2, 3, (5, 5, 60, 50)),
        ],
        num_images=2,
    )
    predictions = [
        prediction([[10, 10, 30, 30], [50, 50, 170, 160]], [0.9, 0.8], [1, 1]),
        prediction([[5, 5, 65, 55]], [0.7], [2]),
    ]
    metrics, results = evaluate(gt, predictions, [1, 2], backend)
    assert set(metrics) == set(METRIC_NAMES)
    # AR1 keeps one detection per image: 1 of 2 cats, 1 of 1 dog.
    assert metrics == pytest.approx(dict.fromkeys(METRIC_NAMES, 1.0) | {"AR1": 0.75})
    assert [(r["image_id"], r["category_id"]) for r in results] == [(1, 7), (1, 7), (2, 3)]
    assert results[1]["bbox"] == pytest.approx([50, 50, 120, 110])
    assert results[2]["score"] == pytest.approx(0.7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_false_positive_ranked_above_true_positive(backend):
    # Two medium cat boxes; a confident detection hits neither, a less confident one matches box A exactly.
    # Ranked: FP (precision 0, recall 0), TP (precision 1/2, recall 1/2). Interpolated precision is 1/2 for
    # the 51 recall points 0.00..0.50 and 0 above, at every IoU threshold: AP = 51 * 0.5 / 101.
    gt = ground_truth([annotation(1, 1, 7, (10, 10, 40, 40)), annotation(2, 1, 7, (120, 120, 40, 40))])
    predictions = [prediction([[60, 150, 100, 190], [10, 10, 50, 50]], [0.9, 0.8], [1, 1])]
    metrics, _ = evaluate(gt, predictions, [1], backend)
    ap = 51 * 0.5 / 101
    expected = {"AP": ap, "AP50": ap, "AP75": ap, "APs": -1, "APm": ap, "APl": -1}
    expected |= {"AR1": 0.0, "AR10": 0.5, "AR100": 0.5, "ARs": -1, "ARm": 0.5, "ARl": -1}
    assert metrics == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_class_without_detections_scores_zero_and_class_without_ground_truth_is_left_out(backend):
    # cat: found perfectly (AP 1); dog: has ground truth but no detection (AP 0); bird: no ground truth, so
    # its false positive is undefined for COCO and does not enter the mean. AP = (1 + 0) / 2.
    gt = ground_truth([annotation(1, 1, 7, (10, 10, 50, 50)), annotation(2, 1, 3, (100, 100, 50, 50))])
    predictions = [prediction([[10, 10, 60, 60], [120, 20, 170, 70]], [0.6, 0.9], [1, 3])]
    metrics, _ = evaluate(gt, predictions, [1], backend)
    assert metrics["AP"] == pytest.approx(0.5)
    assert metrics["AR100"] == pytest.approx(0.5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_detection_on_crowd_region_is_ignored(backend):
    # A crowd region absorbs the most confident detection: neither a false positive nor a missed object.
    gt = ground_truth(
        [annotation(1, 1, 7, (10, 10, 40, 40)), annotation(2, 1, 7, (100, 100, 80, 80), iscrowd=1)]
    )
    predictions = [prediction([[110, 110, 150, 150], [10, 10, 50, 50]], [0.9, 0.8], [1, 1])]
    metrics, _ = evaluate(gt, predictions, [1], backend)
    assert metrics["AP"] == pytest.approx(1.0)
    assert metrics["AR1"] == 0.0  # the one detection allowed per image went to the crowd
    assert metrics["AR10"] == pytest.approx(1.0)
    assert metrics["APl"] == -1  # the only large object is the crowd, which COCO does not count


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_updated_images_are_evaluated(backend):
    # Image 2's object is never predicted for, but image 2 was not evaluated (e.g. a capped eval run).
    gt = ground_truth(
        [annotation(1, 1, 7, (10, 10, 40, 40)), annotation(2, 2, 7, (10, 10, 40, 40))], num_images=2
    )
    metrics, _ = evaluate(gt, [prediction([[10, 10, 50, 50]], [0.5], [1])], [1], backend)
    assert metrics["AP"] == pytest.approx(1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_detections_give_zero_not_a_crash(backend):
    gt = ground_truth(
        [annotation(1, 1, 7, (10, 10, 40, 40)), annotation(2, 2, 3, (10, 10, 150, 150))], num_images=2
    )
    metrics, results = evaluate(gt, [prediction([], [], [])] * 2, [1, 2], backend)
    assert results == []
    assert {name: metrics[name] for name in ("AP", "AP50", "APm", "APl", "AR1", "AR100")} == dict.fromkeys(
        ("AP", "AP50", "APm", "APl", "AR1", "AR100"), 0.0
    )
    assert metrics["APs"] == metrics["ARs"] == -1  # no small object: undefined, as COCO says


def test_evaluator_without_updates_gives_zeros():
    evaluator = CocoEvaluator(ground_truth([annotation(1, 1, 7, (10, 10, 40, 40))]), LABEL_TO_CATEGORY)
    assert evaluator.compute() == dict.fromkeys(METRIC_NAMES, 0.0)


def test_repeated_image_is_counted_once():
    gt = ground_truth([annotation(1, 1, 7, (10, 10, 40, 40))])
    evaluator = CocoEvaluator(gt, LABEL_TO_CATEGORY)
    good = prediction([[10, 10, 50, 50]], [0.9], [1])
    evaluator.update([good, good], [1, 1])
    assert len(evaluator.results()) == 1
    assert evaluator.compute()["AP"] == pytest.approx(1.0)


def test_json_style_label_map_with_string_keys():
    gt = ground_truth([annotation(1, 1, 3, (10, 10, 40, 40))])
    evaluator = CocoEvaluator(gt, {"1": 7, "2": 3})
    evaluator.update([prediction([[10, 10, 50, 50]], [0.9], [2])], [1])
    assert evaluator.results()[0]["category_id"] == 3
    assert evaluator.compute()["AP"] == pytest.approx(1.0)


def test_max_detections_caps_detections_per_image():
    # 11 confident false positives rank ahead of the one true box: the 12th detection counts only when up to
    # 100 detections per image are kept, not 10.
    gt = ground_truth([annotation(1, 1, 7, (10, 10, 40, 40))])
    boxes = [[100 + i, 100, 140 + i, 140] for i in range(11)] + [[10, 10, 50, 50]]
    scores = [0.9 - 0.01 * i for i in range(12)]
    single = prediction(boxes, scores, [1] * 12)
    found = {}
    for max_detections in (10, 100):
        evaluator = CocoEvaluator(gt, LABEL_TO_CATEGORY, max_detections=max_detections)
        evaluator.update([single], [1])
        found[max_detections] = evaluator.compute()["AR100"]
    assert found == {10: 0.0, 100: 1.0}


def test_format_metrics_is_one_line_in_coco_order():
    metrics = dict.fromkeys(METRIC_NAMES, 0.25) | {"AP": 0.4123, "AR100": 0.5}
    line = format_metrics(metrics)
    assert "\n" not in line
    assert line.startswith("AP 0.412 | AP50 0.250 | AP75 0.250 | APs 0.250")
    assert "AR100 0.500" in line
    assert line.count("|") == len(METRIC_NAMES) - 1
