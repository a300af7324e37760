"""dsdet's parameter groups, optimizer and schedule: built from the experiment and stepped by DeepSpeed."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from dsdet.config import ConfigError, TrainSection, experiment_hash, load_experiment
from dsdet.engine.optim import LearningRateFactor, learning_rate_factor, optimizer_setup, parameter_groups
from tests.runners import REPO, deepspeed_command, run

SCRIPT = REPO / "tests" / "scripts" / "optim_ds.py"


class WithEveryKind(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.GroupNorm(2, 4)
        self.layer_norm = nn.LayerNorm(4)
        self.pos_embed = nn.Parameter(torch.zeros(4))
        self.head = nn.Linear(4, 2)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)
        self.tied = self.head  # the same parameters under a second name


def names_by_group(model: nn.Module, groups: list[dict]) -> dict[tuple[float, float], set[str]]:
    name_of = {id(p): n for n, p in model.named_parameters()}
    return {(g["lr"], g["weight_decay"]): {name_of[id(p)] for p in g["params"]} for g in groups}


def test_norm_bias_and_position_embedding_are_exempt_from_weight_decay():
    model = WithEveryKind()
    groups = parameter_groups(model, lr=0.1, weight_decay=0.05, exempt_weight_decay=0.0)
    assert names_by_group(model, groups) == {
        (0.1, 0.0): {
            "pos_embed",
            "conv.bias",
            "norm.weight",
            "norm.bias",
            "layer_norm.weight",
            "layer_norm.bias",
            "head.bias",
        },
        (0.1, 0.05): {"conv.weight", "head.weight"},
    }


def test_a_models_overrides_make_their_own_merged_groups():
    model = WithEveryKind()

    def overrides(_model: nn.Module, name: str) -> dict[str, float]:
        if name.startswith("head."):
            return {"lr_scale": 0.5}
        return {"weight_decay": 0.01} if name == "conv.weight" else {}

    groups = parameter_groups(
        model, lr=0.1, weight_decay=0.05, exempt_weight_decay=0.001, overrides=overrides
    )
    assert names_by_group(model, groups) == {
        (0.1, 0.001): {
            "pos_embed",
            "conv.bias",
            "norm.weight",
            "norm.bias",
            "layer_norm.weight",
            "layer_norm.bias",
        },
        (0.1, 0.01): {"conv.weight"},
        (0.05, 0.05): {"head.weight"},
        (0.05, 0.001): {"head.bias"},
    }


def test_schedule_factors():
    warm = LearningRateFactor(total_steps=10, warmup_steps=4, start_factor=0.2, kind="constant")
    assert [round(warm(s), 6) for s in range(6)] == [0.2, 0.4, 0.6, 0.8, 1.0, 1.0]
    cosine = LearningRateFactor(
        total_steps=10, warmup_steps=2, start_factor=0.0, kind="cosine", final_ratio=0.1
    )
    assert cosine(2) == 1.0 and cosine(6) == pytest.approx(0.55) and cosine(10) == pytest.approx(0.1)
    assert all(cosine(s) > cosine(s + 1) for s in range(2, 10))
    steps = LearningRateFactor(
        total_steps=10, warmup_steps=1, start_factor=1.0, kind="multistep", milestones=(5, 8)
    )
    assert [steps(s) for s in (0, 4, 5, 7, 8, 9)] == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])


def test_multistep_milestones_are_fractions_of_the_run():
    train = TrainSection.model_validate(
        {"schedule": {"name": "multistep", "milestones": [0.5, 0.75], "gamma": 0.5}}
    )
    assert learning_rate_factor(train, total_steps=100, warmup_steps=5).milestones == (50, 75)
    with pytest.raises(
        ConfigError, match=r"train\.schedule\.milestones: must increase \(got \[0\.8, 0\.5\]\)"
    ):
        load_experiment(None, ["train.schedule={name: multistep, milestones: [0.8, 0.5]}"])


def test_optimizer_and_schedule_are_part_of_the_experiment():
    plain = load_experiment(None)
    assert experiment_hash(plain) != experiment_hash(load_experiment(None, ["train.optimizer.name=sgd"]))
    assert experiment_hash(plain) != experiment_hash(load_experiment(None, ["train.schedule.name=constant"]))
    with pytest.raises(ConfigError, match=r"train\.optimizer: unknown name 'lion' \(one of adamw, sgd\)"):
        load_experiment(None, ["train.optimizer.name=lion"])
    with pytest.raises(ConfigError, match=r"train\.schedule: unknown key 'milestone', did you mean 'milestones'"):
        load_experiment(None, ["train.schedule={name: multistep, milestone: [0.5]}"])


@pytest.mark.parametrize(
    ("optimizer", "zero", "keys"),
    [
        ("adamw", {"stage": 2}, {}),
        ("sgd", {"stage": 0}, {}),
        ("sgd", {"stage": 1}, {"zero_allow_untested_optimizer": True}),
        (
            "adamw",
            {"stage": 2, "offload_optimizer": {"device": "cpu"}},
            {"zero_force_ds_cpu_optimizer": False},
        ),
        (
            "sgd",
            {"stage": 3, "offload_optimizer": {"device": "cpu"}},
            {"zero_allow_untested_optimizer": True, "zero_force_ds_cpu_optimizer": False},
        ),
    ],
)
def test_deepspeed_keys_dsdet_sets_knowingly(optimizer, zero, keys):
    train = TrainSection.model_validate({"optimizer": {"name": optimizer}})
    setup = optimizer_setup(train, {"zero_optimization": zero}, total_steps=10, warmup_steps=1, device="cpu")
    assert setup.config_keys == keys


def test_an_optimizer_or_scheduler_the_deepspeed_config_names_is_left_to_deepspeed():
    train = TrainSection()
    named = {"optimizer": {"type": "Adam"}, "scheduler": {"type": "WarmupLR"}}
    setup = optimizer_setup(train, named, total_steps=10, warmup_steps=1, device="cpu")
    assert setup.optimizer is None and setup.scheduler is None and setup.config_keys == {}
    groups = setup.groups(WithEveryKind())
    assert all("lr" not in g for g in groups) and {g["weight_decay"] for g in groups} == {
        0.0,
        train.weight_decay,
    }


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("optim")
    run(deepspeed_command(2, SCRIPT, "--out", out), cwd=SCRIPT.parent, timeout=600)
    return json.loads((out / "cases.json").read_text())


def expected_groups(lr_scales: tuple[float, ...], step: int) -> list[float]:
    """lr, weight decay, lr, ... of the script's four groups after `step` steps of its cosine schedule."""
    factor = LearningRateFactor(total_steps=6, warmup_steps=2, start_factor=0.001, kind="cosine")(step)
    decays = (0.0, 0.05, 0.05, 0.0)  # pos_embed first (the model's own), conv, head weight, head bias
    return [v for scale, decay in zip(lr_scales, decays, strict=True) for v in (0.01 * scale * factor, decay)]


def flat(groups: list[list[float]]) -> list[float]:
    return [value for group in groups for value in group]


DSDET_CASES = [
    "adamw_zero0",
    "adamw_zero2",
    "adamw_zero3",
    "adamw_zero2_offload",
    "adamw_zero3_offload",
    "sgd_zero0",
    "sgd_zero2",
    "sgd_zero3_offload",
]


@pytest.mark.distributed
@pytest.mark.parametrize("case", DSDET_CASES)
def test_groups_keep_their_lr_and_weight_decay_through_warmup_and_decay(cases, case):
    result = cases[case]
    assert result["optimizer"] == ("SGD" if case.startswith("sgd") else "AdamW")
    for step, groups in enumerate(result["groups"]):
        expected = expected_groups((1, 1, 0.1, 0.1), step)
        assert flat(groups) == pytest.approx(expected, rel=1e-9, abs=1e-15), step


@pytest.mark.distributed
def test_zero_stages_and_offload_step_the_same_weights(cases):
    def furthest(a: str, b: str) -> float:
        left, right = cases[a]["weights"], cases[b]["weights"]
        return max(abs(x - y) for name in left for x, y in zip(left[name], right[name], strict=True))

    assert (
        furthest("sgd_zero0", "sgd_zero2") < 1e-7
    )  # SGD steps each element alone: ZeRO partitions change nothing
    assert furthest("sgd_zero0", "sgd_zero3_offload") < 1e-6
    for case in ("adamw_zero2", "adamw_zero3", "adamw_zero2_offload", "adamw_zero3_offload"):
        assert furthest("adamw_zero0", case) < 1e-6, case
    assert furthest("adamw_zero0", "sgd_zero0") > 1e-3  # the comparison can fail


@pytest.mark.distributed
def test_a_deepspeed_optimizer_or_scheduler_still_works(cases):
    # DeepSpeed's AdamW on dsdet's groups: one learning rate (the config's), dsdet's schedule, the groups' decay
    for step, groups in enumerate(cases["deepspeed_adamw_zero2"]["groups"]):
        assert flat(groups) == pytest.approx(expected_groups((1, 1, 1, 1), step), rel=1e-9, abs=1e-15), step
    # DeepSpeed's WarmupLR sets one rate in every group; it reaches warmup_max_lr after the warm-up
    assert {lr for lr, _ in cases["deepspeed_warmup_zero2"]["groups"][-1]} == {0.01}
    assert math.isclose(cases["deepspeed_warmup_zero2"]["groups"][0][0][0], 0.0, abs_tol=1e-12)
