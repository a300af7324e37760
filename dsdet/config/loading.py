"""Load experiments and DeepSpeed configs from files, with overrides, into validated models."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from dsdet.config.deepspeed import DeepSpeedConfig
from dsdet.config.experiment import ExperimentConfig
from dsdet.config.files import parse_yaml, read_mapping
from dsdet.config.overrides import apply_overrides
from dsdet.config.problems import ConfigError, validate_model
from dsdet.config.resolve import fill_from_experiment

DEFAULT_EXPERIMENT = "default.yaml"
EXPERIMENT_SECTIONS = frozenset(ExperimentConfig.model_fields)


def default_experiment_dict() -> dict[str, Any]:
    """The built-in default experiment (dsdet/config/default.yaml) as a plain dict."""
    text = resources.files("dsdet.config").joinpath(DEFAULT_EXPERIMENT).read_text(encoding="utf-8")
    return parse_yaml(text, DEFAULT_EXPERIMENT)


def load_experiment(path: str | Path | None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """The experiment in the YAML file `path` (None: the built-in default) with dotted overrides applied.

    Malformed YAML, a missing file, unknown keys, wrong types, broken rules and settings the deepspeed
    section contradicts are one DsdetError listing every problem with its dotted path."""
    source = str(path) if path is not None else DEFAULT_EXPERIMENT
    data = read_mapping(path) if path is not None else default_experiment_dict()
    return _experiment(apply_overrides(data, overrides), source)


def load_deepspeed_config(path: str | Path, overrides: Sequence[str] = ()) -> DeepSpeedConfig:
    """A DeepSpeed JSON (or YAML) config file as a validated model, 'auto' values kept."""
    return validate_model(DeepSpeedConfig, apply_overrides(read_mapping(path), overrides), str(path))


def is_experiment(data: dict[str, Any]) -> bool:
    """Whether a config dict is an experiment (it has one of model/data/train/eval/deepspeed at the top)."""
    return bool(EXPERIMENT_SECTIONS & set(data))


def load_config_file(path: str | Path) -> ExperimentConfig | DeepSpeedConfig:
    """An experiment or a DeepSpeed config, told apart by its top-level keys."""
    data = read_mapping(path)
    if is_experiment(data):
        return _experiment(data, str(path))
    return validate_model(DeepSpeedConfig, data, str(path))


def _experiment(data: dict[str, Any], source: str) -> ExperimentConfig:
    exp = validate_model(ExperimentConfig, data, source)
    try:
        fill_from_experiment(exp)  # conflicts that need no world size or dataset size show up now
    except ConfigError as exc:
        raise ConfigError(source, exc.problems) from None
    return exp
