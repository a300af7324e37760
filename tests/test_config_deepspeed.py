"""DeepSpeed config models: importing real configs, emitting them back, and every rule with its message."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from dsdet.config import ConfigError, DeepSpeedConfig, load_deepspeed_config
from dsdet.config.presets import SEED_EXAMPLE
from dsdet.config.problems import validate_model
from dsdet.errors import DsdetError

# The deepspeed_config.json of the DeepSpeed seed notes (document 003), kept verbatim as test data.
SEED_CONFIG = Path(__file__).resolve().parent / "data" / "seed_deepspeed_config.json"

# The shape Hugging Face's DeepSpeed integration documents, with "auto" everywhere the trainer decides.
HF_ZERO2_AUTO = {
    "fp16": {
        "enabled": "auto",
        "loss_scale": 0,
        "loss_scale_window": 1000,
        "initial_scale_power": 16,
        "hysteresis": 2,
        "min_loss_scale": 1,
    },
    "bf16": {"enabled": "auto"},
    "optimizer": {
        "type": "AdamW",
        "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"},
    },
    "scheduler": {
        "type": "WarmupDecayLR",
        "params": {
            "warmup_min_lr": "auto",
            "warmup_max_lr": "auto",
            "warmup_num_steps": "auto",
            "total_num_steps": "auto",
        },
    },
    "zero_optimization": {
        "stage": 2,
        "offload_optimizer": {"device": "cpu", "pin_memory": True},
        "allgather_partitions": True,
        "allgather_bucket_size": 2e8,
        "overlap_comm": True,
        "reduce_scatter": True,
        "reduce_bucket_size": "auto",
        "contiguous_gradients": True,
    },
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "steps_per_print": 2000,
    "train_batch_size": "auto",
    "train_micro_batch_size_per_gpu": "auto",
    "wall_clock_breakdown": False,
}

ZERO3_NVME_OFFLOAD = {
    "train_batch_size": 64,
    "train_micro_batch_size_per_gpu": 8,
    "gradient_accumulation_steps": 2,
    "optimizer": {
        "type": "adamw",
        "params": {"lr": 3e-4, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1},
    },
    "bf16": {"enabled": True},
    "zero_optimization": {
        "stage": 3,
        "offload_optimizer": {
            "device": "nvme",
            "nvme_path": "/local_nvme",
            "pin_memory": True,
            "buffer_count": 4,
            "fast_init": False,
        },
        "offload_param": {
            "device": "nvme",
            "nvme_path": "/local_nvme",
            "pin_memory": True,
            "buffer_count": 5,
            "buffer_size": 1e8,
            "max_in_cpu": 1e9,
        },
        "overlap_comm": True,
        "contiguous_gradients": True,
        "sub_group_size": 1e9,
        "reduce_bucket_size": 1e6,
        "stage3_prefetch_bucket_size": 1e6,
        "stage3_param_persistence_threshold": 1e5,
        "stage3_max_live_parameters": 1e9,
        "stage3_max_reuse_distance": 1e9,
        "stage3_gather_16bit_weights_on_model_save": True,
    },
    "activation_checkpointing": {"partition_activations": True, "cpu_checkpointing": True},
    "gradient_clipping": 1.0,
    "checkpoint": {"tag_validation": "FAIL", "load_universal": False},
    "tensorboard": {"enabled": True, "output_path": "logs/", "job_name": "zero3"},
}


def seed_document_config() -> dict:
    """The deepspeed_config.json printed in the DeepSpeed seed notes."""
    return json.loads(SEED_CONFIG.read_text(encoding="utf-8"))


def parse(data: dict) -> DeepSpeedConfig:
    return validate_model(DeepSpeedConfig, data, "ds.json")


def problems_of(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(data)
    return caught.value.problems


@pytest.mark.parametrize(
    "config",
    [seed_document_config(), HF_ZERO2_AUTO, ZERO3_NVME_OFFLOAD],
    ids=["seed", "hf_auto", "zero3_nvme"],
)
def test_import_then_emit_keeps_every_value(config, tmp_path):
    path = tmp_path / "ds_config.json"
    path.write_text(json.dumps(config))
    emitted = load_deepspeed_config(path).to_deepspeed_dict(allow_auto=True)
    assert emitted == config
    assert json.loads(json.dumps(emitted)) == emitted


def test_seed_document_config_is_the_seed_preset():
    config = seed_document_config()
    assert config["activation_checkpointing"]["number_checkpoints"] is None
    assert config == SEED_EXAMPLE


def test_unresolved_auto_lists_every_field():
    with pytest.raises(DsdetError) as caught:
        parse(HF_ZERO2_AUTO).to_deepspeed_dict()
    message = str(caught.value)
    for field in (
        "fp16.enabled",
        "optimizer.params.betas",
        "scheduler.params.total_num_steps",
        "zero_optimization.reduce_bucket_size",
        "train_batch_size",
    ):
        assert field in message
    assert "\n" not in message


def test_deepspeeds_own_pipeline_auto_is_not_dsdets_to_resolve():
    config = parse(
        {
            "train_micro_batch_size_per_gpu": 2,
            "pipeline": {"stages": "auto"},
            "zero_optimization": {"stage": 1},
        }
    )
    assert config.to_deepspeed_dict()["pipeline"] == {"stages": "auto"}


def test_only_set_keys_are_emitted():
    assert parse({"train_batch_size": 8, "zero_optimization": {"stage": 1}}).to_deepspeed_dict() == {
        "train_batch_size": 8,
        "zero_optimization": {"stage": 1},
    }


def test_optimizer_type_keeps_any_letter_case_deepspeed_accepts():
    for spelling in ("adamw", "ADAMW", "AdamW", "lamb"):
        data = {"train_batch_size": 4, "optimizer": {"type": spelling}, "zero_allow_untested_optimizer": True}
        assert parse(data).to_deepspeed_dict()["optimizer"]["type"] == spelling


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        (  # DeepSpeed's own model refuses it
            {"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu", "ratio": 0.5}}},
            "zero_optimization: Partial offloading only supported for ZeRO Stage 3.",
        ),
        (  # DeepSpeed's parser refuses the pair: no single section is wrong, so no path
            {"fp16": {"enabled": True}, "bf16": {"enabled": True}},
            "bfloat16 and fp16 modes cannot be simultaneously enabled",
        ),
        (  # dsdet: DeepSpeed's pipeline engine refuses it at initialize
            {"pipeline": {"stages": 2}, "zero_optimization": {"stage": 2}},
            "pipeline.stages: 2 stages need zero_optimization.stage 0 or 1",
        ),
        (  # dsdet: the NVMe swapper fails at initialize without a path
            {"zero_optimization": {"stage": 3, "offload_param": {"device": "nvme"}}},
            "zero_optimization.offload_param.nvme_path: device nvme needs nvme_path",
        ),
        (  # dsdet: DeepSpeed refuses an optimizer ZeRO has not tested at initialize
            {"optimizer": {"type": "SGD", "params": {"momentum": 0.9}}, "zero_optimization": {"stage": 1}},
            "optimizer.type: SGD under zero_optimization.stage 1 needs zero_allow_untested_optimizer: true",
        ),
        (
            {"train_batch_size": 10, "train_micro_batch_size_per_gpu": 4},
            "train_batch_size 10 is not a multiple of train_micro_batch_size_per_gpu = 4",
        ),
        ({"train_batch_size": None}, "set train_batch_size or train_micro_batch_size_per_gpu"),
        (
            {"optimizer": {"type": "AdamW", "params": {"max_grad_norm": 1.0}}},
            "optimizer.params.max_grad_norm: DeepSpeed refuses it; set gradient_clipping instead",
        ),
        (
            {"optimizer": {"type": "OneBitAdam"}},
            "optimizer.type: DeepSpeed 0.19 removed its 1-bit optimizers",
        ),
    ],
)
def test_each_rule_names_its_fields(patch, expected):
    data = {"train_batch_size": 8, **copy.deepcopy(patch)}
    assert any(expected in problem for problem in problems_of(data)), problems_of(data)


def test_rules_that_hold_pass():
    config = parse(
        {
            "train_batch_size": 8,
            "zero_optimization": {"stage": 3, "offload_param": {"device": "nvme", "nvme_path": "/nvme"}},
        }
    )
    assert config.offload_device("offload_param") == "nvme" and config.nvme_path("offload_param") == "/nvme"


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        (
            {"zero_optimization": {"stage": 2, "offload_param": {"device": "cpu"}}},
            "deepspeed.zero_optimization.offload_param (device cpu) has no effect below ZeRO stage 3 (stage is 2)",
        ),
        (
            {"zero_optimization": {"stage": 0, "offload_optimizer": {"device": "cpu"}}},
            "deepspeed.zero_optimization.offload_optimizer (device cpu) has no effect below ZeRO stage 1 (stage is 0)",
        ),
        ({"_comment": "a note"}, "deepspeed._comment: DeepSpeed does not read this key; it has no effect"),
        (
            {"zero_optimization": {"stage": 2, "cpu_offload": True}},
            "Config parameter cpu_offload is deprecated use offload_optimizer instead",
        ),
    ],
)
def test_settings_without_effect_and_legacy_keys_are_warnings(patch, expected):
    config = parse({"train_batch_size": 8, **patch})
    assert expected in config.warnings, config.warnings
    assert all("\n" not in warning for warning in config.warnings)


def test_offload_that_has_no_effect_is_not_counted():
    config = parse({"train_batch_size": 8, "zero_optimization": {"stage": 2, "offload_param": {"device": "cpu"}}})
    assert config.offload_device("offload_param") == "none"
    legacy = parse({"train_batch_size": 8, "zero_optimization": {"stage": 2, "cpu_offload": True}})
    assert legacy.offload_device("offload_optimizer") == "cpu"


def test_all_problems_are_reported_together_on_one_line():
    data = {
        "train_batch_size": 0,
        "zero_optimisation": {"stage": 3},
        "fp16": {"enabled": "yes please"},
        "tensorboard": {"enabled": True, "log_dir": "runs"},
    }
    with pytest.raises(ConfigError) as caught:
        parse(data)
    problems = caught.value.problems
    assert problems == [
        "train_batch_size: must be a positive integer or 'auto' (got 0)",
        "fp16.enabled: Input should be a valid boolean, unable to interpret input (got 'yes please')",
        "tensorboard: unknown key 'log_dir'",
        "zero_optimisation: unknown key 'zero_optimisation', did you mean 'zero_optimization'?",
    ]
    assert str(caught.value).startswith("ds.json: 4 problems: ") and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"zero_optimization": {"offload_optimiser": {}}},
            "zero_optimization: unknown key 'offload_optimiser', did you mean 'offload_optimizer'?",
        ),
        (
            {"zero_optimization": {"stage": 3, "max_live_parameters": 1, "stage3_max_live_parameters": 2}},
            "zero_optimization: key 'max_live_parameters' is another name of 'stage3_max_live_parameters'",
        ),
        ({"optimizer": {"type": "Adamm"}}, "optimizer.type: 'Adamm' is neither one of DeepSpeed's optimizers"),
        ({"optimizer": {"type": "Adamm"}}, "did you mean 'Adam'?"),
        ({"optimizer": {"params": {}}}, "optimizer: needs a 'type'"),
        ({"optimizer": {"type": "sgd"}}, "torch.optim names are case-sensitive: did you mean 'SGD'?"),
        (
            {"optimizer": {"type": "AdamW", "params": {"weight_decai": 0.1}}},
            "optimizer.params: unknown key 'weight_decai' for AdamW, did you mean 'weight_decay'?",
        ),
        (
            {"scheduler": {"type": "WarmupDecayLR", "params": {}}},
            "scheduler.params: WarmupDecayLR needs 'total_num_steps' (a value or 'auto')",
        ),
        (
            {"scheduler": {"type": "WarmupLR", "params": {"warmup_max_lrr": 0.1}}},
            "scheduler.params: unknown key 'warmup_max_lrr' for WarmupLR, did you mean 'warmup_max_lr'?",
        ),
        ({"scheduler": {"type": "Cosine"}}, "scheduler.type: 'Cosine' is neither one of DeepSpeed's schedulers"),
        (
            {"zero_optimization": {"offload_param": {"device": "gpu"}}},
            "zero_optimization.offload_param.device: Input should be 'none', 'cpu' or 'nvme' (got 'gpu'), did you mean 'cpu'?",
        ),
        ({"checkpoint": {"tag_validation": "Fial"}}, "checkpoint: Checkpoint config contains invalid tag_validation"),
        ({"gradient_cliping": 1.0}, "gradient_cliping: unknown key 'gradient_cliping', did you mean 'gradient_clipping'?"),
        (
            {"activation_checkpointing": {"partition_activation": True}},
            "activation_checkpointing.partition_activation: unknown key 'partition_activation', did you mean 'partition_activations'?",
        ),
    ],
)
def test_messages_name_the_path_and_suggest(data, expected):
    problems = problems_of({"train_batch_size": 8, **data})
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(
    ("values", "world_size", "expected"),
    [
        ((None, 4, 2), 3, (24, 4, 2)),
        ((32, 4, None), 2, (32, 4, 4)),
        ((32, None, 2), 4, (32, 4, 2)),
        ((16, None, None), 4, (16, 4, 1)),
        ((None, 8, None), 2, (16, 8, 1)),
        ((24, 4, 3), 2, (24, 4, 3)),
    ],
)
def test_batch_sizes_follow_deepspeeds_derivation(values, world_size, expected):
    train, micro, accum = values
    config = parse(
        {
            "train_batch_size": train,
            "train_micro_batch_size_per_gpu": micro,
            "gradient_accumulation_steps": accum,
        }
    )
    assert config.batch_sizes(world_size) == expected


def test_batch_identity_failure_names_every_factor():
    config = parse(
        {"train_batch_size": 24, "train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 3}
    )
    with pytest.raises(
        DsdetError,
        match=r"train_batch_size 24 must equal train_micro_batch_size_per_gpu 4 x gradient_accumulation_steps 3 x world size 4",
    ):
        config.batch_sizes(4)
    with pytest.raises(DsdetError, match="still 'auto'"):
        parse({"train_batch_size": "auto"}).batch_sizes(1)


def test_schema_is_deepspeeds_own_models():
    schema = DeepSpeedConfig.model_json_schema()
    assert schema["additionalProperties"] is True  # DeepSpeed ignores unknown top-level keys
    properties = schema["properties"]
    assert {"zero_optimization", "fp16", "bf16", "aio", "flops_profiler", "optimizer"} <= set(properties)
    zero = properties["zero_optimization"]
    assert zero["description"] == "Validated by DeepSpeed's DeepSpeedZeroConfig."
    assert {"stage", "offload_optimizer", "reduce_bucket_size", "stage3_max_live_parameters"} <= set(zero["properties"])
    assert "$ref" not in json.dumps(schema)  # every DeepSpeed model is inlined
    assert set(properties["aio"]["properties"]) >= {"block_size", "queue_depth"}
