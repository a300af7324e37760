"""Load a trained model without DeepSpeed: from a checkpoint of any ZeRO stage or an exported state dict."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dsdet.engine.checkpoint import consolidated_state_dict, find_checkpoint, run_info
from dsdet.errors import DsdetError
from dsdet.models import build_model


@dataclass
class TrainedModel:
    """A plain PyTorch detector and what it was trained with."""

    model: nn.Module
    device: torch.device
    name: str
    class_names: list[str]
    label_to_category_id: dict[int, int]


def _load_exported(path: Path) -> tuple[dict, dict]:
    meta_path = path.with_suffix(path.suffix + ".json")
    if not meta_path.is_file():
        raise DsdetError(f"{path} has no {meta_path.name} beside it (written by `dsdet export`)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise DsdetError(f"cannot read exported model {path}: {exc}") from None
    return state, json.loads(meta_path.read_text())


def inference_device() -> torch.device:
    """The accelerator DeepSpeed selected on this machine (a GPU where there is one), else the CPU."""
    from deepspeed.accelerator import get_accelerator

    return torch.device(get_accelerator().current_device_name())


def load_trained_model(spec: str | Path) -> TrainedModel:
    """Build the model a checkpoint (directory) or an exported `model.pt` describes, load its weights and put it
    on `inference_device()`."""
    path = Path(spec)
    if path.is_file():
        state, meta = _load_exported(path)
    else:
        ref = find_checkpoint(path)
        state, meta = consolidated_state_dict(ref), run_info(ref)
    m = meta["model"]
    model = build_model(m["name"], m["num_classes"], norm=m.get("norm", "batchnorm"), **m.get("kwargs", {}))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DsdetError(
            f"weights in {spec} do not fit model {m['name']}: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    device = inference_device()
    model.to(device).eval()
    labels = {int(k): int(v) for k, v in meta["label_to_category_id"].items()}
    return TrainedModel(model, device, m["name"], list(meta["class_names"]), labels)
