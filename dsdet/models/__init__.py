"""Detectors built from scratch behind one registry: `build_model(name, num_classes)` and `list_models()`."""

from dsdet.models import ssdlite_mobilenet_v2, stock, tinyssd, yolo  # noqa: F401  (registers the models)
from dsdet.models.build import build_model
from dsdet.models.registry import ModelInfo, ParamOverrides, list_models, model_info, register_model

__all__ = ["ModelInfo", "ParamOverrides", "build_model", "list_models", "model_info", "register_model"]
