"""Every use dsdet makes of DeepSpeed's internals: private attributes, the file names inside its checkpoints and
the names of its shared-memory segments. They may change in any release, so they live here, in one module, and
dsdet warns once when the installed DeepSpeed is outside the releases its tests cover (pyproject.toml pins the
same range)."""

from __future__ import annotations

import logging
from typing import Any

import deepspeed
from torch import nn

log = logging.getLogger("dsdet")

TESTED_RELEASES = ((0, 19), (0, 20))  # [first, last) major.minor the test suite ran on

# File names inside a checkpoint tag directory (DeepSpeed's engine and its zero_to_fp32 use the same).
MODEL_STATES = "mp_rank_00_model_states.pt"  # ZeRO 0-2: the module's state dict and client state
ZERO3_MODEL_STATES = "zero_pp_rank_0_mp_rank_00_model_states.pt"  # ZeRO-3: rank 0's module file
OPTIM_STATES_GLOB = "*zero_pp_rank_*_optim_states.pt"  # one per data-parallel rank at ZeRO 1-3
PIPELINE_LAYER_GLOB = "layer_*-model_states.pt"  # one per pipeline layer
# DeepSpeed's CPU all-reduce names each rank's /dev/shm segment PREFIX<uid>_<master addr>_<master port>_<rank>.
SHM_SEGMENT_PREFIX = "deepspeed_allreduce_buffer_"


def version_warning(version: str = deepspeed.__version__) -> str | None:
    """A warning when `version` is outside TESTED_RELEASES, else None."""
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return f"cannot read DeepSpeed's version {version!r}; dsdet is tested with 0.19"
    first, last = TESTED_RELEASES
    if first <= major_minor < last:
        return None
    return (
        f"DeepSpeed {version} is outside the releases dsdet is tested with ({first[0]}.{first[1]}.x); "
        "checkpoint file names and engine internals it relies on may differ"
    )


def comm_backend() -> Any:
    """deepspeed.comm's backend object (`cdb`), which carries every collective DeepSpeed's engine runs."""
    return deepspeed.comm.comm.cdb


def set_comm_backend(backend: Any) -> None:
    """Make `backend` carry deepspeed.comm's collectives."""
    deepspeed.comm.comm.cdb = backend


def engine_micro_steps(engine: Any) -> int:
    """Micro-batches the engine has run backward and step on since it started (or was loaded)."""
    return int(engine.micro_steps)


def additional_losses(engine: Any) -> dict[str, Any]:
    """A pipeline engine's loss components of the last `train_batch` (known on the last stage)."""
    return dict(engine.agg_additional_losses or {})


def partitioned_elements(model: nn.Module) -> tuple[int, int]:
    """(elements this rank holds, elements of the whole model) of a ZeRO-3 partitioned model."""
    total = sum(p.ds_numel for p in model.parameters())
    local = sum(p.ds_tensor.numel() for p in model.parameters())
    return local, total


def is_partitioned(tensor: Any) -> bool:
    """True for a ZeRO-3 parameter whose values are partitioned now (not gathered)."""
    from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus

    return getattr(tensor, "ds_status", None) == ZeroParamStatus.NOT_AVAILABLE
