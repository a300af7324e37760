"""COCO evaluation of detections, gathering them across ranks, and drawing them on images."""

from dsdet.eval.draw import draw_detections
from dsdet.eval.evaluator import CocoEvaluator
from dsdet.eval.metrics import METRIC_NAMES, format_metrics

__all__ = ["METRIC_NAMES", "CocoEvaluator", "draw_detections", "format_metrics"]
