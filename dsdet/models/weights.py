"""Load a local weights file into a built model, strictly, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dsdet.errors import DsdetError
from dsdet.models.whole_tensors import WholeTensors, already_whole

# Wrappers under which training tools store the state dict.
_STATE_DICT_KEYS = ("model", "module", "state_dict")
# Bookkeeping buffers that FrozenBatchNorm2d lacks; their absence or presence is not a mismatch.
_IGNORED_SUFFIX = ".num_batches_tracked"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a plain state dict, or one held under "model" / "module" / "state_dict", from `path`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DsdetError(f"model.weights: file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DsdetError(f"model.weights: cannot read {path}: {str(exc).splitlines()[0]}") from exc
    while isinstance(state, dict):
        wrapper = next((k for k in _STATE_DICT_KEYS if isinstance(state.get(k), dict)), None)
        if wrapper is None:
            break
        state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DsdetError(f"model.weights: {path} holds no state dict of tensors")
    return state


def _shape(tensor: torch.Tensor) -> tuple[int, ...]:
    """A tensor's full shape, also when ZeRO-3 has partitioned it (`ds_shape`)."""
    return tuple(getattr(tensor, "ds_shape", tensor.shape))


def _mismatches(model_state: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> list[str]:
    """Human-readable differences between the model's keys and shapes and those of `state`."""
    own = {k: v for k, v in model_state.items() if not k.endswith(_IGNORED_SUFFIX)}
    given = {k: v for k, v in state.items() if not k.endswith(_IGNORED_SUFFIX)}
    problems = [f"missing {k}" for k in own if k not in given]
    problems += [f"unexpected {k}" for k in given if k not in own]
    problems += [
        f"{k} has shape {tuple(given[k].shape)}, model wants {_shape(own[k])}"
        for k in own
        if k in given and tuple(given[k].shape) != _shape(own[k])
    ]
    return problems


def load_weights(model: nn.Module, path: str | Path, whole: WholeTensors = already_whole) -> nn.Module:
    """Load `path` into `model` with strict key and shape checks; a mismatch names the first keys. Values go in
    one module at a time, each module's own parameters made whole (`whole`) while they are written."""
    state = read_state_dict(path)
    model_state = model.state_dict(keep_vars=True)
    problems = _mismatches(model_state, state)
    if problems:
        shown = "; ".join(problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise DsdetError(f"model.weights: {path} does not fit the model: {shown}{more}")
    if any(t.is_meta for t in model_state.values()):
        return model  # a shape-only model (parameter counting): the fit is checked, there is nothing to copy
    for prefix, module in model.named_modules():
        names = [
            n for n, _ in (*module.named_parameters(recurse=False), *module.named_buffers(recurse=False))
        ]
        keys = {name: f"{prefix}.{name}" if prefix else name for name in names}
        own = {name: state[key] for name, key in keys.items() if key in state}
        if own:
            with whole(list(module.parameters(recurse=False)), True):
                module.load_state_dict(own, strict=False)
    return model
