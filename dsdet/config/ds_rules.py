"""dsdet's rules on top of DeepSpeed's parser: what DeepSpeed would refuse only at `deepspeed.initialize`,
near-miss typos DeepSpeed would silently ignore, and warnings for settings that have no effect."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dsdet.config.base import AUTO
from dsdet.config.ds_builders import (
    REMOVED_OPTIMIZERS,
    deepspeed_optimizers,
    deepspeed_schedulers,
    optimizer_class,
    optimizer_parameters,
    scheduler_parameters,
    torch_optimizers,
    zero_tested,
)
from dsdet.config.ds_keys import DICT_SECTIONS, by_section, known_keys
from dsdet.config.ds_parser import import_deepspeed, offload_device
from dsdet.config.problems import did_you_mean

OPTIMIZER_KEYS = ("type", "params", "legacy_fusion")
SCHEDULER_KEYS = ("type", "params")
# How alike (difflib's ratio) an unknown key and a real one must be for the unknown key to be a typo.
NEAR_MISS_SIMILARITY = 0.85


@dataclass
class Findings:
    """Refusals (one line each, naming the dotted key) and warnings (settings that have no effect)."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_unknown_keys(data: dict[str, Any], reads: set[tuple[str, str]], findings: Findings) -> None:
    """Keys DeepSpeed's parser never looks up (neither for `data`, whose lookups are `reads`, nor for a config
    with every plain section), in the sections it reads whole as plain dicts: a near miss of a real key is
    refused with "did you mean", anything else gets a warning that it has no effect."""
    known, looked_up = known_keys(), by_section(reads)
    sections = {
        path: known.get(path, frozenset()) | looked_up.get(path, set())
        for path in ("", "pipeline", "checkpoint.parallel_write", *DICT_SECTIONS)
    }
    sections |= {"optimizer": frozenset(OPTIMIZER_KEYS), "scheduler": frozenset(SCHEDULER_KEYS)}
    sections[""] |= {_autotuning_key()}
    for path, keys in sections.items():
        node = value_at(data, path)
        if not isinstance(node, dict):
            continue
        for key in node:
            if key in keys:
                continue
            where = f"{path}.{key}" if path else key
            close = near_miss(key, keys)
            if close:
                findings.problems.append(f"{where}: unknown key {key!r}, did you mean {close!r}?")
            else:
                findings.warnings.append(
                    f"deepspeed.{where}: DeepSpeed does not read this key; it has no effect"
                )


def near_miss(key: str, keys: Iterable[str]) -> str | None:
    """The real key that `key` is a typo of (a letter or two off), or None; "_x" keys are comments."""
    if key.startswith("_"):
        return None
    close = difflib.get_close_matches(key, sorted(keys), n=1, cutoff=NEAR_MISS_SIMILARITY)
    return close[0] if close else None


def check_optimizer(data: dict[str, Any], zero_stage: int, findings: Findings) -> None:
    """The optimizer DeepSpeed would build at initialize: a name it knows, arguments it takes, and one ZeRO
    has tested (or zero_allow_untested_optimizer)."""
    optimizer = data.get("optimizer")
    if not isinstance(optimizer, dict):
        return
    name = optimizer.get("type")
    if name is None:
        findings.problems.append(
            "optimizer: needs a 'type' (DeepSpeed ignores an optimizer block without one); name one, "
            "or leave the block out and dsdet builds train.optimizer"
        )
        return
    if not isinstance(name, str) or name == AUTO:
        return
    params = optimizer.get("params") if isinstance(optimizer.get("params"), dict) else {}
    if "max_grad_norm" in params:
        findings.problems.append(
            "optimizer.params.max_grad_norm: DeepSpeed refuses it; set gradient_clipping instead"
        )
    if "fused" in params and params.get("torch_adam") is False:
        findings.problems.append(
            "optimizer.params.fused: selects torch's Adam kernel and needs torch_adam (DeepSpeed's kernels are fused)"
        )
    built = optimizer_class(name)
    if built is None:
        if name.lower() in REMOVED_OPTIMIZERS:
            findings.problems.append(
                f"optimizer.type: DeepSpeed 0.19 removed its 1-bit optimizers ({', '.join(REMOVED_OPTIMIZERS.values())}) "
                f"and can no longer build {name}; use Adam or AdamW"
            )
        elif name.lower() in {n.lower() for n in torch_optimizers()}:
            spelled = next(n for n in torch_optimizers() if n.lower() == name.lower())
            findings.problems.append(
                f"optimizer.type: {name!r} is not a torch.optim class; torch.optim names are case-sensitive: "
                f"did you mean {spelled!r}?"
            )
        else:
            findings.problems.append(
                f"optimizer.type: {name!r} is neither one of DeepSpeed's optimizers "
                f"({', '.join(deepspeed_optimizers())}) nor a torch.optim class"
                f"{did_you_mean(name, [*deepspeed_optimizers(), *torch_optimizers()])}"
            )
        return
    takes = optimizer_parameters(built)
    for key in params if takes is not None else ():
        if key not in takes:
            findings.problems.append(
                f"optimizer.params: unknown key {key!r} for {name}{did_you_mean(key, sorted(takes))}"
            )
    if zero_stage >= 1 and data.get("zero_allow_untested_optimizer") is not True and not zero_tested(built):
        findings.problems.append(
            f"optimizer.type: {name} under zero_optimization.stage {zero_stage} needs "
            "zero_allow_untested_optimizer: true (DeepSpeed refuses optimizers ZeRO has not tested)"
        )


def check_scheduler(data: dict[str, Any], findings: Findings) -> None:
    """The scheduler DeepSpeed would build: one of its own or torch's, given only arguments it takes."""
    scheduler = data.get("scheduler")
    if not isinstance(scheduler, dict) or not isinstance(scheduler.get("type"), str):
        return
    name = scheduler["type"]
    parameters = scheduler_parameters(name)
    if parameters is None:
        own = list(deepspeed_schedulers())
        findings.problems.append(
            f"scheduler.type: {name!r} is neither one of DeepSpeed's schedulers ({', '.join(own)}) "
            f"nor a torch.optim.lr_scheduler class{did_you_mean(name, own)}"
        )
        return
    params = scheduler.get("params") if isinstance(scheduler.get("params"), dict) else {}
    for key in params:
        if key not in parameters:
            findings.problems.append(
                f"scheduler.params: unknown key {key!r} for {name}{did_you_mean(key, list(parameters))}"
            )
    for key, required in parameters.items():
        if required and key not in params:
            findings.problems.append(f"scheduler.params: {name} needs {key!r} (a value or 'auto')")


def check_pipeline(data: dict[str, Any], zero_stage: int, findings: Findings) -> None:
    """DeepSpeed's pipeline engine refuses ZeRO stages 2 and 3 at initialize."""
    stages = value_at(data, "pipeline.stages")
    if isinstance(stages, int) and not isinstance(stages, bool) and stages > 1 and zero_stage >= 2:
        findings.problems.append(
            f"pipeline.stages: {stages} stages need zero_optimization.stage 0 or 1 "
            f"(DeepSpeed's pipeline engine does not support ZeRO stage {zero_stage})"
        )


def check_offload(parsed: Any, findings: Findings) -> None:
    """Offload to NVMe needs a path (DeepSpeed fails at initialize without one); offload blocks DeepSpeed
    accepts but ignores at this ZeRO stage get a warning."""
    zero = parsed.zero_config
    stage = int(zero.stage)
    for key, lowest in (("offload_param", 3), ("offload_optimizer", 1)):
        block, device = getattr(zero, key), offload_device(zero, key)
        if device == "nvme" and not getattr(block, "nvme_path", None):
            findings.problems.append(f"zero_optimization.{key}.nvme_path: device nvme needs nvme_path")
        if device != "none" and stage < lowest:
            findings.warnings.append(
                f"deepspeed.zero_optimization.{key} (device {device}) has no effect below ZeRO stage {lowest} "
                f"(stage is {stage})"
            )


def _autotuning_key() -> str:
    import_deepspeed()
    from deepspeed.autotuning.constants import AUTOTUNING  # read by the launcher's autotuner, not the parser

    return AUTOTUNING


def value_at(data: Any, path: str, default: Any = None) -> Any:
    """The value at dotted `path` ("" = `data` itself) of nested dicts as written, or `default`."""
    for key in path.split(".") if path else ():
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data
