"""Property tests: whatever goes in, only a validated config or a one-line DsdetError comes out."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsdet.config import (
    PRESETS,
    DeepSpeedConfig,
    ExperimentConfig,
    generate_deepspeed_config,
    resolve_deepspeed_config,
)
from dsdet.config.ds_keys import known_keys
from dsdet.config.files import read_mapping
from dsdet.config.loading import default_experiment_dict
from dsdet.config.overrides import apply_overrides
from dsdet.config.problems import validate_model
from dsdet.errors import DsdetError
from tests.test_config_deepspeed import HF_ZERO2_AUTO, ZERO3_NVME_OFFLOAD

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

TRICKY = st.sampled_from(
    [
        "auto",
        "AUTO",
        0,
        -1,
        1,
        3,
        2**40,
        1e9,
        0.5,
        -0.0,
        True,
        False,
        None,
        "",
        "cpu",
        "nvme",
        "Adam",
        "SGD",
        [],
        {},
    ]
)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12) | TRICKY
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)
DS_KEYS = st.sampled_from(sorted(known_keys()[""])) | st.text(max_size=20)

DEEPSPEED_BASES = [generate_deepspeed_config([name]).to_deepspeed_dict(allow_auto=True) for name in PRESETS]
DEEPSPEED_BASES += [HF_ZERO2_AUTO, ZERO3_NVME_OFFLOAD]


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    return [prefix + (key,) for key, _ in children] + [
        p for key, child in children for p in _paths(child, prefix + (key,))
    ]


@st.composite
def mutated(draw: st.DrawFn, bases: list[dict]) -> dict:
    """A valid config with one to three random edits: a value replaced, a key dropped, misspelt or added."""
    data = copy.deepcopy(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths)) if paths else ()
        parent: Any = data
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1] if path else None
        action = draw(st.sampled_from(["replace", "delete", "misspell", "add"]))
        if action == "replace" and path:
            parent[key] = draw(JSON_VALUES)
        elif action == "delete" and path:
            parent.pop(key)
        elif action == "misspell" and isinstance(key, str) and isinstance(parent, dict):
            parent[key[:-1] + draw(st.sampled_from("esz_"))] = parent.pop(key)
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(JSON_VALUES)
    return data


def _accepted_or_one_line_error(action) -> Any:
    try:
        return action()
    except DsdetError as exc:
        assert "\n" not in str(exc) and str(exc)
        return None


@PROPERTY_SETTINGS
@given(st.dictionaries(DS_KEYS, JSON_VALUES, max_size=6))
def test_arbitrary_dicts_give_a_config_or_a_dsdet_error(data):
    config = _accepted_or_one_line_error(lambda: validate_model(DeepSpeedConfig, data, "ds.json"))
    if config is not None:
        emitted = config.to_deepspeed_dict(allow_auto=True)
        assert validate_model(DeepSpeedConfig, emitted, "again").to_deepspeed_dict(allow_auto=True) == emitted


@PROPERTY_SETTINGS
@given(mutated(DEEPSPEED_BASES))
def test_mutated_deepspeed_configs_round_trip_or_fail_cleanly(data):
    config = _accepted_or_one_line_error(lambda: validate_model(DeepSpeedConfig, data, "ds.json"))
    if config is not None:
        emitted = config.to_deepspeed_dict(allow_auto=True)
        assert validate_model(DeepSpeedConfig, emitted, "again").to_deepspeed_dict(allow_auto=True) == emitted
        _accepted_or_one_line_error(config.to_deepspeed_dict)


EXPERIMENT_BASES = [{**default_experiment_dict(), "deepspeed": ds} for ds in DEEPSPEED_BASES[:6]]


@PROPERTY_SETTINGS
@given(
    mutated(EXPERIMENT_BASES), st.integers(1, 64), st.integers(1, 5000), st.none() | st.integers(1, 10**10)
)
def test_mutated_experiments_resolve_or_fail_cleanly(data, world_size, steps_per_epoch, num_parameters):
    exp = _accepted_or_one_line_error(lambda: validate_model(ExperimentConfig, data, "exp.yaml"))
    if exp is None:
        return
    resolved = _accepted_or_one_line_error(
        lambda: resolve_deepspeed_config(
            exp, world_size=world_size, steps_per_epoch=steps_per_epoch, num_parameters=num_parameters
        )
    )
    if resolved is not None:
        config = validate_model(DeepSpeedConfig, resolved, "resolved")
        assert config.to_deepspeed_dict() == resolved
        assert config.batch_sizes(world_size)[0] == resolved["train_batch_size"]


@PROPERTY_SETTINGS
@given(
    st.lists(
        st.text(max_size=30)
        | st.builds(
            "{}={}".format,
            st.sampled_from(["train.epochs", "deepspeed.zero_optimization", "a.b.c", "train"]),
            st.text(max_size=20),
        ),
        max_size=4,
    )
)
def test_arbitrary_overrides_apply_or_fail_cleanly(overrides):
    result = _accepted_or_one_line_error(lambda: apply_overrides(default_experiment_dict(), overrides))
    if result is not None:
        _accepted_or_one_line_error(lambda: validate_model(ExperimentConfig, result, "exp.yaml"))


@PROPERTY_SETTINGS
@given(
    st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
    st.sampled_from(["c.yaml", "c.json", "c"]),
)
def test_arbitrary_file_contents_read_or_fail_cleanly(tmp_path_factory, content, name):
    path = tmp_path_factory.mktemp("files") / name
    path.write_bytes(content)
    data = _accepted_or_one_line_error(lambda: read_mapping(path))
    assert data is None or isinstance(data, dict)
