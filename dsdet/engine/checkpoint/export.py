"""Consolidate a DeepSpeed checkpoint of any ZeRO stage into a plain fp32 PyTorch state dict."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import torch
from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

from dsdet.engine.checkpoint.layout import CheckpointRef, find_checkpoint, run_info
from dsdet.engine.deepspeed_internals import MODEL_STATES, OPTIM_STATES_GLOB, PIPELINE_LAYER_GLOB
from dsdet.engine.pipeline import plain_state_dict
from dsdet.errors import DsdetError


def _has_zero_optimizer_states(path: Path) -> bool:
    files = sorted(path.glob(OPTIM_STATES_GLOB))
    return bool(files) and not files[0].name.startswith("bf16_")


def consolidated_state_dict(ref: CheckpointRef) -> dict[str, torch.Tensor]:
    """fp32 weights of the whole model, gathered from every rank's shard (DeepSpeed's zero_to_fp32), or from
    the per-layer files of a pipeline-parallel checkpoint."""
    if any(ref.path.glob(PIPELINE_LAYER_GLOB)):
        state = plain_state_dict(ref.path)
    elif _has_zero_optimizer_states(ref.path):
        with contextlib.redirect_stdout(io.StringIO()):
            state = get_fp32_state_dict_from_zero_checkpoint(str(ref.root), tag=ref.tag)
    else:  # ZeRO stage 0: rank 0's model states hold every weight
        model_file = ref.path / MODEL_STATES
        if not model_file.is_file():
            raise DsdetError(f"checkpoint {ref.path} holds no model states file")
        state = torch.load(model_file, map_location="cpu", weights_only=False)["module"]
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def export_checkpoint(spec: str | Path, out: str | Path, verify_contents: bool = True) -> Path:
    """Write `out` (a plain state dict) and `out`.json (model name, kwargs, classes) from a checkpoint;
    `verify_contents=False` skips re-hashing a checkpoint that was just saved and verified."""
    ref = find_checkpoint(spec, verify_contents=verify_contents)
    info = run_info(ref)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(consolidated_state_dict(ref), tmp)
    tmp.replace(out)
    meta = {
        "checkpoint": str(ref.path),
        **{k: info[k] for k in ("model", "class_names", "label_to_category_id")},
    }
    out.with_suffix(out.suffix + ".json").write_text(json.dumps(meta, indent=1))
    return out
