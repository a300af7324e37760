"""The `deepspeed` part of docs/configuration.md, written from the installed DeepSpeed and dsdet's base.

dsdet's base (and the experiment settings that fill its "auto" values) comes first; then every key the
installed DeepSpeed reads: its pydantic sections field by field, its plain sections by the keys its parser
looks up, and the optimizers and schedulers it builds with their arguments.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from dsdet.config.ds_builders import (
    REMOVED_OPTIMIZERS,
    deepspeed_optimizers,
    deepspeed_schedulers,
    optimizer_class,
    optimizer_parameters,
)
from dsdet.config.ds_keys import known_keys, removed_keys, section_model
from dsdet.config.ds_schema import model_schema
from dsdet.config.presets import BASE_DEEPSPEED

INTRO = """The `deepspeed` section is a DeepSpeed JSON config with DeepSpeed's own key names, laid over dsdet's base.
Whatever the installed DeepSpeed accepts is accepted: dsdet validates the section with DeepSpeed's own parser
and models (so aliases, legacy keys and defaults are DeepSpeed's), and adds what DeepSpeed would only refuse
when the engine starts (an optimizer or scheduler it cannot build, an optimizer ZeRO has not tested, ZeRO-2/3
with pipeline stages, NVMe offload without a path, batch sizes that do not multiply out) and near-miss typos of
keys DeepSpeed would silently ignore. Keys DeepSpeed ignores, settings without effect at the chosen ZeRO stage
and legacy keys get a one-line warning. `auto` is filled from the experiment at launch: the settings it comes
from are named below; the ZeRO bucket sizes come from the model's parameter count and `train_batch_size` from
the number of ranks.
"""


def deepspeed_markdown(filled_from: dict[str, list[str]]) -> list[str]:
    """Markdown tables of the `deepspeed` section; `filled_from` maps a DeepSpeed key to experiment settings."""
    known = known_keys()
    parts = [INTRO, _base_table(filled_from)]
    models = {key: section_model(key) for key in sorted(known[""])}
    for key, model in models.items():
        if model is not None:
            rows = _model_rows(model_schema(model), f"deepspeed.{key}")
            parts.append(_table(f"`deepspeed.{key}`", f"Validated by DeepSpeed's `{model.__name__}`.", rows))
    removed = removed_keys()
    plain = [
        [f"`deepspeed.{key}`", ", ".join(f"`{name}`" for name in sorted(known[key]))]
        for key in models
        if models[key] is None and key in known and key not in ("", "optimizer", "scheduler")
    ]
    parts.append(
        "### Sections DeepSpeed reads as plain mappings\n\nUnknown keys in them are ignored by DeepSpeed; "
        "dsdet refuses near misses of the keys listed and warns about the rest.\n\n"
        + _rows(["section", "keys DeepSpeed reads"], plain)
    )
    scalars = [
        f"`deepspeed.{key}`" for key in models if models[key] is None and key not in known and key not in removed
    ]
    parts.append("### Other top-level keys DeepSpeed reads\n\n" + ", ".join(scalars) + "\n")
    parts.append(
        "### Removed keys\n\nDeepSpeed refuses these, and so does dsdet:\n\n"
        + _rows(["key", "DeepSpeed's reason"], [[f"`deepspeed.{key}`", removed[key]] for key in sorted(removed)])
    )
    parts.append(_optimizer_table())
    parts.append(_scheduler_table())
    return parts


def _base_table(filled_from: dict[str, list[str]]) -> str:
    rows = []
    for key, value in _leaves(BASE_DEEPSPEED, ""):
        sources = ", ".join(f"`{setting}`" for setting in filled_from.get(key, []))
        rows.append([f"`deepspeed.{key}`", _code(value), sources or "-"])
    return (
        "### dsdet's base\n\nWhat an experiment's `deepspeed` section starts from (`dsdet config generate` "
        "prints it); changing `optimizer.type` or `scheduler.type` starts from that type's template.\n\n"
        + _rows(["key", "value", "`auto` filled from"], rows)
    )


def _model_rows(schema: dict[str, Any], prefix: str) -> list[list[str]]:
    rows = []
    for name, node in schema.get("properties", {}).items():
        key = f"{prefix}.{name}"
        if node.get("type") == "object" and node.get("properties"):
            rows += _model_rows(node, key)
            continue
        rows.append([f"`{key}`", _type_words(node), _code(node["default"]) if "default" in node else "-", node.get("description", "")])
    return rows


def _type_words(node: dict[str, Any]) -> str:
    if "enum" in node:
        return "one of " + ", ".join(f"`{value}`" for value in node["enum"])
    if "anyOf" in node:
        return " or ".join(_type_words(member) for member in node["anyOf"])
    return node.get("type", "any")


def _optimizer_table() -> str:
    rows = []
    for name in deepspeed_optimizers():
        takes = optimizer_parameters(optimizer_class(name))
        rows.append([f"`{name}`", ", ".join(f"`{key}`" for key in sorted(takes)) if takes else "as the class takes"])
    removed = ", ".join(REMOVED_OPTIMIZERS.values())
    return (
        "### `deepspeed.optimizer`\n\n`type` is one of DeepSpeed's optimizers (any letter case) or a `torch.optim` "
        f"class (exact spelling); `params` are the arguments of the class DeepSpeed builds. Removed in DeepSpeed "
        f"0.19 and refused: {removed}. Under ZeRO, optimizers ZeRO has not tested need "
        "`zero_allow_untested_optimizer: true`. dsdet fills `lr` and `weight_decay` from the experiment.\n\n"
        + _rows(["type", "params"], rows)
    )


def _scheduler_table() -> str:
    rows = []
    for name, parameters in deepspeed_schedulers().items():
        shown = [
            f"`{key}`" + (" (required)" if parameter.default is inspect.Parameter.empty else f" = {_code(parameter.default)}")
            for key, parameter in parameters.items()
        ]
        rows.append([f"`{name}`", ", ".join(shown)])
    return (
        "### `deepspeed.scheduler`\n\n`type` is one of DeepSpeed's schedulers or a `torch.optim.lr_scheduler` class; "
        "`params` are its arguments. dsdet fills learning rates and step counts given as `auto` from the "
        "experiment.\n\n" + _rows(["type", "params"], rows)
    )


def _leaves(data: dict[str, Any], prefix: str) -> list[tuple[str, Any]]:
    leaves = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            leaves += _leaves(value, f"{prefix}{key}.")
        else:
            leaves.append((f"{prefix}{key}", value))
    return leaves


def _code(value: Any) -> str:
    return f"`{value}`" if isinstance(value, str) else f"`{json.dumps(value)}`"


def _table(heading: str, description: str, rows: list[list[str]]) -> str:
    return f"### {heading}\n\n{description}\n\n" + _rows(["key", "type", "default", "notes"], rows)


def _rows(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
