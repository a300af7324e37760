"""The DeepSpeed config: the user's JSON dict, validated by the installed DeepSpeed's own parser plus dsdet's rules.

dsdet models only what it reasons about itself (the batch sizes, "auto"); every other key, alias, deprecation
and default is DeepSpeed's (dsdet.config.ds_parser). The facts dsdet needs (ZeRO stage, offload, precision,
optimizer) are read from DeepSpeed's parsed config, so legacy spellings count like their current names.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import ConfigDict, PrivateAttr, RootModel, model_validator
from pydantic_core import PydanticCustomError

from dsdet.config import ds_rules
from dsdet.config.base import AUTO
from dsdet.config.ds_parser import BATCH_KEYS, DeepSpeedRefusal, offload_device, parse
from dsdet.config.ds_schema import deepspeed_json_schema
from dsdet.errors import DsdetError

# "auto" values that DeepSpeed resolves itself; dsdet leaves them in the emitted JSON.
DEEPSPEED_NATIVE_AUTO = frozenset({"pipeline.stages"})


class DeepSpeedConfig(RootModel[dict[str, Any]]):
    """A DeepSpeed JSON config, as DeepSpeed reads it; keys not set stay out of the emitted JSON."""

    model_config = ConfigDict(json_schema_extra=deepspeed_json_schema)
    _parsed: Any = PrivateAttr(None)
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _deepspeed_accepts(self) -> DeepSpeedConfig:
        findings = ds_rules.Findings(problems=_batch_type_problems(self.root))
        reads: set[tuple[str, str]] = set()
        try:
            self._parsed = parse(self.root, findings.warnings, reads)
        except DeepSpeedRefusal as refusal:
            findings.problems += refusal.problems
        ds_rules.check_unknown_keys(self.root, reads, findings)
        if self._parsed is not None:
            stage = self.zero_stage
            ds_rules.check_optimizer(self.root, stage, findings)
            ds_rules.check_pipeline(self.root, stage, findings)
            ds_rules.check_offload(self._parsed, findings)
        ds_rules.check_scheduler(self.root, findings)
        if not findings.problems:
            batch = _batch_problem(*(self.root.get(key) for key in BATCH_KEYS))
            findings.problems += [batch] if batch else []
        if findings.problems:
            raise PydanticCustomError(
                "cross_field",
                "{summary}",
                {"summary": "; ".join(findings.problems), "problems": findings.problems},
            )
        self._warnings = list(dict.fromkeys(findings.warnings))
        return self

    @property
    def warnings(self) -> list[str]:
        """Settings DeepSpeed accepts but ignores, and legacy keys with their current names (one line each)."""
        return self._warnings

    def get(self, path: str, default: Any = None) -> Any:
        """The value at dotted `path` as written (may be "auto"), or `default`."""
        return ds_rules.value_at(self.root, path, default)

    @property
    def zero_stage(self) -> int:
        """The ZeRO stage DeepSpeed runs (legacy spellings included; "auto" counts as DeepSpeed's default)."""
        return int(self._parsed.zero_optimization_stage)

    def offload_device(self, block: str) -> str:
        """Where `block` ("offload_optimizer" or "offload_param") sends its data at this ZeRO stage: none, cpu
        or nvme (parameters move only at stage 3, optimizer states from stage 1)."""
        lowest = 3 if block == "offload_param" else 1
        return offload_device(self._parsed.zero_config, block) if self.zero_stage >= lowest else "none"

    def nvme_path(self, block: str) -> str | None:
        """The NVMe directory of `block` when it offloads to nvme."""
        config = getattr(self._parsed.zero_config, block)
        path = getattr(config, "nvme_path", None)
        return str(path) if path is not None else None

    @property
    def precision(self) -> str:
        """"fp16", "bf16" (DeepSpeed's bf16 mode), "autocast" (torch.autocast), "auto" or "fp32"."""
        if self._parsed.float16_config.enabled:
            return "fp16"
        if self._parsed.bfloat16_config.enabled:
            return "bf16"
        if self._parsed.torch_autocast_enabled:
            return "autocast"
        if AUTO in (self.get("fp16.enabled"), self.get("bf16.enabled"), self.get("torch_autocast.enabled")):
            return "auto"
        return "fp32"

    @property
    def fp16_loss_scale(self) -> float:
        """fp16's static loss scale (0: dynamic)."""
        return float(self._parsed.float16_config.loss_scale)

    @property
    def optimizer_type(self) -> str | None:
        """The optimizer's `type` as written, or None when the config brings no optimizer."""
        value = self.get("optimizer.type")
        return value if isinstance(value, str) else None

    def batch_sizes(self, world_size: int) -> tuple[int, int, int]:
        """(train_batch_size, micro batch, accumulation) as DeepSpeed derives them; DsdetError if they cannot agree."""
        values = tuple(self.root.get(key) for key in BATCH_KEYS)
        if AUTO in values:
            raise DsdetError("the batch sizes are still 'auto'; resolve the config with an experiment first")
        problem = _batch_problem(*values, world_size=world_size)
        if problem:
            raise DsdetError(problem)
        return _derive_batch(*values, world_size)

    def to_deepspeed_dict(self, *, allow_auto: bool = False) -> dict[str, Any]:
        """The JSON dict DeepSpeed reads; unresolved 'auto' is an error unless allowed."""
        data = {k: v for k, v in self.model_dump(mode="json").items() if v is not None}
        unresolved = [] if allow_auto else auto_paths(data)
        if unresolved:
            raise DsdetError(
                f"unresolved 'auto' in {', '.join(unresolved)}: resolve the config against an experiment "
                "(dsdet config generate --world-size N, or dsdet train) or set the values"
            )
        return data


def auto_paths(data: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every 'auto' value left for dsdet to fill in a DeepSpeed dict."""
    if isinstance(data, dict):
        return [p for key, value in data.items() for p in auto_paths(value, f"{prefix}{key}.")]
    path = prefix.rstrip(".")
    return [path] if data == AUTO and path not in DEEPSPEED_NATIVE_AUTO else []


def _batch_type_problems(data: dict[str, Any]) -> list[str]:
    """The batch sizes are dsdet's to check: positive integers or "auto"."""
    problems = []
    for key in BATCH_KEYS:
        value = data.get(key)
        if value is None or value == AUTO:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(f"{key}: must be a positive integer or 'auto' (got {value!r})")
    return problems


def _derive_batch(
    train: int | None, micro: int | None, accum: int | None, world: int
) -> tuple[int, int, int]:
    """Fill the missing batch sizes the way DeepSpeed's config parser does (train or micro is set)."""
    if train and micro and accum:
        return train, micro, accum
    if train and micro:
        return train, micro, train // micro // world
    if train and accum:
        return train, train // world // accum, accum
    if micro:
        return micro * (accum or 1) * world, micro, accum or 1
    return train, train // world, 1


def _batch_problem(train: Any, micro: Any, accum: Any, world_size: int | None = None) -> str | None:
    """What breaks train = micro x accumulation x world size; without a world size, only divisibility."""
    if AUTO in (train, micro, accum):
        return None
    if not train and not micro:
        return "set train_batch_size or train_micro_batch_size_per_gpu"
    if world_size is None:
        given = {
            k: v
            for k, v in (("train_micro_batch_size_per_gpu", micro), ("gradient_accumulation_steps", accum))
            if v
        }
        product = math.prod(given.values())
        if train and train % product:
            return f"train_batch_size {train} is not a multiple of {' x '.join(given)} = {product}"
        return None
    total, per_rank, steps = _derive_batch(train, micro, accum, world_size)
    if per_rank < 1 or steps < 1 or total != per_rank * steps * world_size:
        return (
            f"train_batch_size {total} must equal train_micro_batch_size_per_gpu {per_rank} x "
            f"gradient_accumulation_steps {steps} x world size {world_size}"
        )
    return None
