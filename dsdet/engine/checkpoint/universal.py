"""Elastic resume through DeepSpeed's universal checkpoint: another number of ranks or another ZeRO stage.

A ZeRO checkpoint is partitioned for the world size that wrote it. To resume it elsewhere, rank 0 converts it
once with DeepSpeed's `ds_to_universal` into `<tag>/universal/` (kept with its checkpoint, pruned with it) and
every rank loads that with `checkpoint.load_universal`. DeepSpeed restores parameters, optimizer moments, the
learning-rate schedule and the step; module buffers (BatchNorm statistics) are copied here from the model states.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import deepspeed
import torch
from deepspeed.checkpoint.constants import PARAM
from torch import nn

from dsdet.engine.checkpoint import layout as ckpt
from dsdet.engine.deepspeed_internals import MODEL_STATES, ZERO3_MODEL_STATES
from dsdet.errors import DsdetError

UNIVERSAL_TAG = "universal"
log = logging.getLogger("dsdet")


def universal_ref(ref: ckpt.CheckpointRef) -> ckpt.CheckpointRef:
    """Where the universal conversion of `ref` lives (DeepSpeed loads it as tag 'universal' under `ref.path`)."""
    return ckpt.CheckpointRef(ref.path, UNIVERSAL_TAG)


class Layout(NamedTuple):
    """How a run spreads its model: ranks, ZeRO stage and pipeline stages."""

    ranks: int
    zero_stage: int
    pipeline_stages: int = 1

    @classmethod
    def of(cls, ranks: int, ds_config: dict) -> Layout:
        """The layout a DeepSpeed config gives on `ranks` ranks."""
        stages = ds_config.get("pipeline", {}).get("stages", 1)
        zero = int(ds_config.get("zero_optimization", {}).get("stage", 0))
        return cls(ranks, zero, stages if isinstance(stages, int) else 1)

    def describe(self) -> str:
        pipeline = f", {self.pipeline_stages} pipeline stages" if self.pipeline_stages > 1 else ""
        return f"ZeRO stage {self.zero_stage} on {self.ranks} ranks{pipeline}"


def needs_universal(ref: ckpt.CheckpointRef, saved: Layout, wanted: Layout) -> bool:
    """Whether resuming `ref` needs a universal conversion; raises for layout changes it cannot make."""
    if saved == wanted or (
        saved.zero_stage == wanted.zero_stage == 0 and saved.pipeline_stages == 1 == wanted.pipeline_stages
    ):
        return False  # stage 0 keeps whole optimizer states on every rank
    if (
        saved.zero_stage >= 1
        and wanted.zero_stage >= 1
        and saved.pipeline_stages == 1 == wanted.pipeline_stages
    ):
        return True
    raise DsdetError(
        f"checkpoint {ref.path} was saved with {saved.describe()}; resuming it with {wanted.describe()} needs "
        "ZeRO stage 1-3 without pipeline stages on both sides (DeepSpeed's universal checkpoint). "
        f"Launch it as it was saved, or `dsdet export` it and start from model.weights=model.pt "
        "with train.resume=null"
    )


def convert(ref: ckpt.CheckpointRef) -> ckpt.CheckpointRef:
    """Convert `ref` into its universal form unless already done (rank 0 only); atomic, like every save."""
    target = universal_ref(ref)
    if ckpt.problem(target) is None:
        return target
    tmp = ref.path / (UNIVERSAL_TAG + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(target.path, ignore_errors=True)
    log.info("converting %s into a universal checkpoint for a new world size or ZeRO stage", ref.path)
    cmd = [
        sys.executable,
        "-m",
        "deepspeed.checkpoint.ds_to_universal",
        "--input_folder",
        str(ref.path),
        "--output_folder",
        str(tmp),
        "--num_extract_workers",
        "1",
        "--num_merge_workers",
        "1",
        "--inject_missing_state",  # dsdet models carry no Megatron-style universal_checkpoint_info
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    (ref.path / "latest_universal").unlink(missing_ok=True)  # the converter points its parent folder at tmp
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
        raise DsdetError(f"converting checkpoint {ref.path} to a universal checkpoint failed: {lines[-1]}")
    _name_model_states_for_every_stage(tmp)
    _readable_by_every_stage(tmp)
    tmp.rename(target.path)
    ckpt.mark_complete(target, {"converted_from": ref.tag})
    return target


def _name_model_states_for_every_stage(folder: Path) -> None:
    """DeepSpeed looks for the model states under a stage-specific name; provide both, whichever stage saved."""
    zero2, zero3 = folder / MODEL_STATES, folder / ZERO3_MODEL_STATES
    if not zero2.is_file():
        shutil.copyfile(zero3, zero2)
    if not zero3.is_file():
        shutil.copyfile(zero2, zero3)


def _readable_by_every_stage(folder: Path) -> None:
    """The converter writes the layout of the ZeRO stage that saved; add what the other stages' loaders read.

    ZeRO-3 reads the step and hyperparameters from `optimizer_state_dict`; ZeRO-1/2 want `ds_version` there,
    each parameter state as a `{"param": tensor}` dict and the step in every parameter's `step.pt`."""
    zero = folder / "zero"
    path = zero / "optimizer_state.pt"
    state = torch.load(path, map_location="cpu", weights_only=False)  # DeepSpeed's own files, not user input
    state.setdefault("ds_version", deepspeed.__version__)
    if "optimizer_state_dict" not in state:  # saved by ZeRO-1/2, whose converter keeps the step per parameter
        step = torch.load(next(zero.glob("*/step.pt")), weights_only=False)
        state["optimizer_state_dict"] = {"state": {0: {"step": step}}, "param_groups": state["param_groups"]}
    torch.save(state, path)
    step = state["optimizer_state_dict"]["state"][0]["step"]
    for param_dir in (d for d in zero.iterdir() if (d / "exp_avg.pt").is_file()):
        for file in param_dir.glob("*.pt"):
            value = torch.load(file, map_location="cpu", weights_only=False)
            if torch.is_tensor(value) and file.name != "step.pt":  # saved by ZeRO-3: a bare flat tensor
                torch.save({PARAM: value}, file)
        if not (param_dir / "step.pt").is_file():
            torch.save(step, param_dir / "step.pt")


def with_universal_loading(ds_config: dict) -> dict:
    """A copy of the DeepSpeed config whose `load_checkpoint` reads universal checkpoints."""
    return {**ds_config, "checkpoint": {**ds_config.get("checkpoint", {}), "load_universal": True}}


def restore_buffers(module: nn.Module, ref: ckpt.CheckpointRef) -> None:
    """Copy the saved buffers (BatchNorm statistics) into `module`: universal loading restores parameters only."""
    # Our own checkpoint, written by DeepSpeed (it pickles more than tensors), not a file handed in by a user.
    saved = torch.load(ref.path / MODEL_STATES, map_location="cpu", weights_only=False)["module"]
    with torch.no_grad():
        for name, buffer in module.named_buffers():
            if name in saved:
                buffer.copy_(saved[name])
