"""Which keys the installed DeepSpeed reads, found by asking it: the keys its parser looks up (recorded while it
parses), the sections it validates with its own pydantic models, and the keys it refuses as removed."""

from __future__ import annotations

from functools import cache

from pydantic import BaseModel, ValidationError

from dsdet.config.ds_parser import (
    BATCH_KEYS,
    NEUTRAL_BATCH,
    find_model,
    import_deepspeed,
    parse_prepared,
    prepared_for_deepspeed,
    problems_of,
    record_reads,
    walk_model,
)

_PROBE_KEY = "__dsdet_probe__"


@cache
def section_model(key: str) -> type[BaseModel] | None:
    """DeepSpeed's pydantic model that validates top-level `key` and refuses unknown keys in it, or None
    when DeepSpeed reads `key` as a plain dict (and ignores keys it does not know)."""
    try:
        parse_prepared(prepared_for_deepspeed({key: {_PROBE_KEY: 1}}), None)
    except ValidationError as exc:
        if any(error["type"] == "extra_forbidden" for error in exc.errors()):
            model = find_model(exc.title)
            loc = next(e["loc"] for e in exc.errors() if e["type"] == "extra_forbidden")[:-1]
            return walk_model(model, loc) if model else None
    except Exception:  # noqa: BLE001 - DeepSpeed refuses the probe for another reason: treat as a dict section
        return None
    return None


# Plain-dict sections DeepSpeed reads whole at parse time; an empty one makes the parser look up each key.
DICT_SECTIONS = (
    "activation_checkpointing",
    "aio",
    "flops_profiler",
    "checkpoint",
    "data_types",
    "torch_autocast",
    "timers",
)


@cache
def known_keys() -> dict[str, frozenset[str]]:
    """Section path ("" for the top level, "aio" ...) -> the keys DeepSpeed's parser looks up there."""
    import_deepspeed()
    from deepspeed.runtime.config import get_pipeline_config

    reads: set[tuple[str, str]] = set()
    probe = {
        **NEUTRAL_BATCH,
        **{key: {} for key in DICT_SECTIONS},
        "optimizer": {"type": "Adam", "params": {}},
        "scheduler": {"type": "WarmupLR", "params": {}},
    }
    parse_prepared(record_reads(probe, "", reads), None)
    sections = by_section(reads)
    sections["pipeline"] = set(get_pipeline_config({}))
    sections[""] |= set(BATCH_KEYS)
    return {path: frozenset(keys) for path, keys in sections.items()}


def by_section(reads: set[tuple[str, str]]) -> dict[str, set[str]]:
    """Recorded (path, key) reads grouped as section path -> keys."""
    sections: dict[str, set[str]] = {}
    for path, key in reads:
        sections.setdefault(path.rstrip("."), set()).add(key)
    return sections


@cache
def removed_keys() -> dict[str, str]:
    """Top-level keys DeepSpeed still looks up only to refuse them (removed features) -> its reason."""
    removed = {}
    for key in known_keys()[""]:
        try:
            parse_prepared(prepared_for_deepspeed({key: {}}), None)
        except Exception as exc:  # noqa: BLE001 - any refusal; only "removed" ones count
            reason = problems_of(exc)[0]
            if "removed" in reason.lower():
                removed[key] = reason
    return removed
