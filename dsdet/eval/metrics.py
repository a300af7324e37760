"""The twelve standard COCO numbers, read from accumulated precision/recall arrays, and their one-line summary."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")

_ALL, _SMALL, _MEDIUM, _LARGE = range(4)  # COCO's area ranges, in the order COCOeval keeps them


def _mean_defined(values: np.ndarray) -> float:
    """Mean over the entries COCO defines (> -1); -1 when there are none."""
    defined = values[values > -1]
    return float(defined.mean()) if defined.size else -1.0


def summarize(precision: np.ndarray, recall: np.ndarray, iou_thresholds: np.ndarray) -> dict[str, float]:
    """COCO metrics from precision [T,R,K,A,M] and recall [T,K,A,M], with maxDets sorted as [1, 10, max]."""
    at_50 = np.isclose(iou_thresholds, 0.50)
    at_75 = np.isclose(iou_thresholds, 0.75)
    return {
        "AP": _mean_defined(precision[..., _ALL, -1]),
        "AP50": _mean_defined(precision[at_50][..., _ALL, -1]),
        "AP75": _mean_defined(precision[at_75][..., _ALL, -1]),
        "APs": _mean_defined(precision[..., _SMALL, -1]),
        "APm": _mean_defined(precision[..., _MEDIUM, -1]),
        "APl": _mean_defined(precision[..., _LARGE, -1]),
        "AR1": _mean_defined(recall[..., _ALL, 0]),
        "AR10": _mean_defined(recall[..., _ALL, 1]),
        "AR100": _mean_defined(recall[..., _ALL, -1]),
        "ARs": _mean_defined(recall[..., _SMALL, -1]),
        "ARm": _mean_defined(recall[..., _MEDIUM, -1]),
        "ARl": _mean_defined(recall[..., _LARGE, -1]),
    }


def format_metrics(metrics: Mapping[str, float]) -> str:
    """One line such as 'AP 0.412 | AP50 0.701 | ... | ARl 0.655' (the COCO names present, in COCO order)."""
    return " | ".join(f"{name} {metrics[name]:.3f}" for name in METRIC_NAMES if name in metrics)
