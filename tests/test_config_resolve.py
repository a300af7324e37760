"""Resolving "auto" from the experiment: the values, the conflicts (all at once) and what is left unresolved."""

from __future__ import annotations

import pytest

from dsdet.config import (
    ConfigError,
    DeepSpeedConfig,
    ExperimentConfig,
    bucket_sizes,
    fill_from_experiment,
    for_device,
    load_experiment,
    resolve_deepspeed_config,
    total_training_steps,
    warmup_steps,
)
from dsdet.errors import DsdetError


def resolve(
    overrides: list[str],
    *,
    world_size: int = 2,
    steps_per_epoch: int = 50,
    num_parameters: int | None = 3_000_000,
) -> dict:
    exp = load_experiment(None, overrides)
    return resolve_deepspeed_config(
        exp, world_size=world_size, steps_per_epoch=steps_per_epoch, num_parameters=num_parameters
    )


def test_every_auto_is_filled_from_the_experiment():
    ds = resolve(
        [
            "train.batch_size=3",
            "train.grad_accum_steps=2",
            "train.epochs=4",
            "train.lr=0.02",
            "train.weight_decay=0.001",
            "train.warmup_ratio=0.25",
            "train.precision=bf16",
            "train.gradient_clipping=5.0",
            "deepspeed.optimizer.type=AdamW",
            "deepspeed.scheduler.type=WarmupDecayLR",
            "deepspeed.zero_optimization={stage: 3, reduce_bucket_size: auto, stage3_param_persistence_threshold: auto}",
        ],
        world_size=3,
        steps_per_epoch=50,
    )
    assert (
        ds["train_batch_size"],
        ds["train_micro_batch_size_per_gpu"],
        ds["gradient_accumulation_steps"],
    ) == (18, 3, 2)
    assert ds["optimizer"] == {
        "type": "AdamW",
        "params": {"lr": 0.02, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.001},
    }
    # 4 epochs x ceil(50 / 2) = 100 optimizer steps; warm-up ceil(0.25 x 100) = 25
    assert ds["scheduler"]["params"] == {
        "warmup_min_lr": 0.0,
        "warmup_max_lr": 0.02,
        "warmup_num_steps": 25,
        "total_num_steps": 100,
    }
    assert ds["bf16"] == {"enabled": False} and ds["fp16"] == {"enabled": False}
    assert ds["torch_autocast"] == {"enabled": True, "dtype": "bfloat16"}
    assert ds["gradient_clipping"] == 5.0
    # 3e6 parameters: buckets of 3e6 / 4 = 750_000 < 2**20, so 2**20; persistence 10 x isqrt(3e6) = 17_320;
    # the unset prefetch bucket is sized too, not left to DeepSpeed's 5e7
    assert ds["zero_optimization"] == {
        "stage": 3,
        "reduce_bucket_size": 2**20,
        "stage3_param_persistence_threshold": 17_320,
        "stage3_prefetch_bucket_size": 2**20,
    }


def test_an_explicit_bucket_size_is_kept_and_unset_ones_are_sized():
    ds = resolve(["deepspeed.zero_optimization={stage: 2, reduce_bucket_size: 5000000}"])
    assert ds["zero_optimization"]["reduce_bucket_size"] == 5_000_000
    assert ds["zero_optimization"]["allgather_bucket_size"] == 2**20
    assert "stage3_prefetch_bucket_size" not in ds["zero_optimization"]


def test_max_steps_caps_the_schedule():
    ds = resolve(["train.max_steps=30", "train.epochs=10", "deepspeed.scheduler.type=WarmupCosineLR"])
    assert ds["scheduler"]["params"] == {"warmup_num_steps": 3, "total_num_steps": 30}


def test_step_helpers():
    exp = load_experiment(None, ["train.epochs=3", "train.grad_accum_steps=4", "train.warmup_ratio=0.0"])
    assert total_training_steps(exp, 10) == 3 * 3  # ceil(10 / 4) = 3 optimizer steps per epoch
    assert warmup_steps(exp, 9) == 1  # DeepSpeed needs at least one warm-up step
    assert warmup_steps(load_experiment(None, ["train.warmup_ratio=0.1"]), 101) == 11
    with pytest.raises(DsdetError, match="steps_per_epoch must be a positive integer, got 0"):
        total_training_steps(exp, 0)


def test_bucket_sizes_follow_the_parameter_count():
    assert bucket_sizes(None) == {
        "reduce_bucket_size": 500_000_000,
        "allgather_bucket_size": 500_000_000,
        "stage3_prefetch_bucket_size": 50_000_000,
        "stage3_param_persistence_threshold": 100_000,
    }
    # P/4 = 10_000_000, rounded up to a multiple of 4096
    assert bucket_sizes(40_000_000) == {
        "reduce_bucket_size": 10_002_432,
        "allgather_bucket_size": 10_002_432,
        "stage3_prefetch_bucket_size": 10_002_432,
        "stage3_param_persistence_threshold": 63_240,
    }
    assert bucket_sizes(10**10)["reduce_bucket_size"] == 500_000_000


@pytest.mark.parametrize("num_parameters", [18_975_129, 4_194_305, 7_777_777])
def test_bucket_sizes_are_aligned_for_deepspeed(num_parameters):
    # ZeRO-1/2 assert "allgather_bucket_size must be a multiple of nccl_start_alignment_factor" (an odd
    # P/4 from fasterrcnn_mobilenet_v3_large_fpn's 18,975,129 parameters failed there).
    sizes = bucket_sizes(num_parameters)
    for key in ("reduce_bucket_size", "allgather_bucket_size", "stage3_prefetch_bucket_size"):
        assert sizes[key] % 4096 == 0 and sizes[key] >= num_parameters / 4, (key, sizes[key])


def test_missing_keys_the_experiment_decides_are_filled():
    """DeepSpeed clips at 1.0 when gradient_clipping is absent; the experiment's 0.0 must win."""
    imported = DeepSpeedConfig.model_validate({"train_batch_size": "auto", "optimizer": {"type": "AdamW"}})
    ds = resolve_deepspeed_config(
        ExperimentConfig(deepspeed=imported), world_size=2, steps_per_epoch=5, num_parameters=None
    )
    assert ds["gradient_clipping"] == 0.0 and ds["train_micro_batch_size_per_gpu"] == 4
    assert ds["optimizer"] == {"type": "AdamW", "params": {"lr": 0.002, "weight_decay": 0.0001}}


def test_all_conflicts_are_reported_together():
    deepspeed = {
        "train_batch_size": 12,
        "gradient_accumulation_steps": 3,
        "scheduler": {"type": "WarmupLR", "params": {"warmup_num_steps": 1000}},
    }
    exp = ExperimentConfig.model_validate({"deepspeed": deepspeed})
    with pytest.raises(ConfigError) as caught:
        resolve_deepspeed_config(exp, world_size=2, steps_per_epoch=50, num_parameters=None)
    assert caught.value.problems == [
        "deepspeed.gradient_accumulation_steps is 3 but train.grad_accum_steps gives 1; make them equal or set 'auto'",
        "deepspeed.scheduler.params.warmup_num_steps is 1000 but train.warmup_ratio x 600 steps gives 60; make them equal or set 'auto'",
        "deepspeed.train_batch_size is 12 but batch size 4 x 3 x world size 2 gives 24; make them equal or set 'auto'",
    ]
    assert "\n" not in str(caught.value)


def test_explicit_values_that_agree_are_kept():
    ds = resolve(
        [
            "train.lr=0.05",
            "deepspeed.optimizer={type: AdamW, params: {lr: 0.05}}",
            "deepspeed.train_batch_size=8",
        ]
    )
    assert ds["optimizer"]["params"]["lr"] == 0.05 and ds["train_batch_size"] == 8


def test_fill_only_keeps_explicit_values():
    exp = ExperimentConfig.model_validate(
        {
            "train": {"lr": 0.01},
            "deepspeed": {
                "optimizer": {"type": "AdamW", "params": {"lr": 0.5}},
                "scheduler": {"type": "WarmupLR"},
            },
        }
    )
    ds = resolve_deepspeed_config(
        exp, world_size=1, steps_per_epoch=10, num_parameters=None, must_match=False
    )
    assert ds["optimizer"]["params"]["lr"] == 0.5 and ds["scheduler"]["params"]["warmup_max_lr"] == 0.01


def test_without_world_size_or_dataset_size_those_values_stay_auto():
    config = fill_from_experiment(load_experiment(None, ["deepspeed.scheduler.type=WarmupLR"]))
    left = config.to_deepspeed_dict(allow_auto=True)
    assert left["train_batch_size"] == "auto" and left["scheduler"]["params"]["warmup_num_steps"] == "auto"
    assert left["train_micro_batch_size_per_gpu"] == 4
    with pytest.raises(
        DsdetError, match=r"unresolved 'auto' in train_batch_size, scheduler\.params\.warmup_num_steps"
    ):
        config.to_deepspeed_dict()


@pytest.mark.parametrize(("world_size", "steps"), [(0, 10), (2, 0), (True, 10)])
def test_bad_world_or_dataset_size_is_refused(world_size, steps):
    with pytest.raises(DsdetError, match="must be a positive integer"):
        resolve_deepspeed_config(
            load_experiment(None), world_size=world_size, steps_per_epoch=steps, num_parameters=None
        )


def test_resolved_default_experiment_is_accepted_by_deepspeed():
    from deepspeed.runtime.config import DeepSpeedConfig as DeepSpeedsParser

    ds = resolve(["train.precision=bf16", "train.grad_accum_steps=2"], world_size=1)
    parsed = DeepSpeedsParser(ds, mpu=None)
    assert (parsed.train_batch_size, parsed.gradient_accumulation_steps, parsed.zero_optimization_stage) == (
        8,
        2,
        2,
    )
    assert parsed.torch_autocast_enabled and not parsed.bfloat16_config.enabled
    assert parsed.optimizer_name is None and parsed.scheduler_name is None  # dsdet builds both


@pytest.mark.parametrize(
    ("params", "device", "expected"),
    [
        ({}, "cpu", {"torch_adam": True, "fused": True}),
        ({"torch_adam": True}, "cpu", {"torch_adam": True, "fused": True}),
        ({"fused": False}, "cpu", {"torch_adam": True, "fused": False}),
        ({"torch_adam": False}, "cpu", {"torch_adam": False}),
        ({}, "cuda", {}),
        ({"torch_adam": True}, "cuda", {"torch_adam": True}),
    ],
)
def test_for_device_picks_torchs_fused_adamw_on_cpu_unless_chosen(params, device, expected):
    ds = {"optimizer": {"type": "AdamW", "params": {"lr": 0.1, **params}}}
    assert for_device(ds, device)["optimizer"]["params"] == {"lr": 0.1, **expected}
    assert for_device({"optimizer": {"type": "SGD", "params": {"lr": 0.1}}}, device)["optimizer"][
        "params"
    ] == {"lr": 0.1}


def test_fused_without_torch_adam_is_refused_by_name():
    with pytest.raises(DsdetError, match=r"optimizer\.params\.fused: selects torch's Adam kernel"):
        load_experiment(None, ["deepspeed.optimizer={type: AdamW, params: {torch_adam: false, fused: true}}"])
