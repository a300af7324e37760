"""Presets: ds_configs/ is the generator's output, DeepSpeed's own parser accepts each, and composition rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsdet.config import PRESETS, ExperimentConfig, generate_deepspeed_config, resolve_deepspeed_config
from dsdet.config.presets import BASE_DEEPSPEED, overlay
from dsdet.errors import DsdetError
from tests.runners import deepspeed_command, run

DS_CONFIGS = Path(__file__).resolve().parents[1] / "ds_configs"


def generated_text(name: str) -> str:
    """What `dsdet config generate --preset NAME` prints."""
    return json.dumps(generate_deepspeed_config([name]).to_deepspeed_dict(allow_auto=True), indent=2) + "\n"


def test_ds_configs_holds_exactly_the_presets():
    assert sorted(p.stem for p in DS_CONFIGS.glob("*.json")) == sorted(PRESETS)


@pytest.mark.parametrize("name", list(PRESETS))
def test_committed_file_is_the_generator_output(name):
    assert (DS_CONFIGS / f"{name}.json").read_text(encoding="utf-8") == generated_text(name), (
        f"ds_configs/{name}.json is stale: run dsdet config generate --preset {name} -o ds_configs/{name}.json"
    )


@pytest.mark.parametrize("name", list(PRESETS))
def test_deepspeeds_parser_accepts_each_resolved_preset(name):
    from deepspeed.runtime.config import DeepSpeedConfig as DeepSpeedsParser

    config = generate_deepspeed_config([name])
    exp = ExperimentConfig(deepspeed=config)
    resolved = resolve_deepspeed_config(
        exp, world_size=1, steps_per_epoch=20, num_parameters=2_000_000, must_match=False
    )
    parsed = DeepSpeedsParser(resolved, mpu=None)
    assert parsed.zero_optimization_stage == config.zero_stage
    assert parsed.train_batch_size == resolved["train_batch_size"]
    assert parsed.float16_config.enabled == (config.precision == "fp16")


def test_preset_contents():
    assert generate_deepspeed_config(["zero3_offload"]).offload_device("offload_param") == "cpu"
    assert generate_deepspeed_config(["pipeline"]).zero_stage == 1
    bf16 = generate_deepspeed_config(["bf16"])
    assert (
        bf16.precision == "autocast"
        and bf16.get("bf16.enabled") is False
        and bf16.get("fp16.enabled") is False
    )
    assert generate_deepspeed_config().to_deepspeed_dict(allow_auto=True) == BASE_DEEPSPEED


def test_presets_and_options_compose_in_order():
    config = generate_deepspeed_config(
        ["zero2", "fp16"],
        zero_stage=3,
        offload_param="nvme",
        nvme_path="/nvme",
        optimizer="AdamW",
        lr=0.002,
        micro_batch=8,
        grad_accum=2,
    )
    ds = config.to_deepspeed_dict(allow_auto=True)
    assert ds["zero_optimization"]["stage"] == 3 and ds["zero_optimization"]["reduce_bucket_size"] == "auto"
    assert ds["zero_optimization"]["offload_param"] == {
        "device": "nvme",
        "nvme_path": "/nvme",
        "pin_memory": True,
    }
    assert ds["fp16"]["enabled"] is True and ds["optimizer"]["params"]["lr"] == 0.002
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"]) == (8, 2)


def test_choosing_an_optimizer_or_scheduler_uses_its_template():
    ds = generate_deepspeed_config(optimizer="sgd", scheduler="OneCycle").to_deepspeed_dict(allow_auto=True)
    assert ds["optimizer"] == {
        "type": "SGD",
        "params": {"lr": "auto", "momentum": 0.9, "weight_decay": "auto"},
    }
    assert ds["zero_allow_untested_optimizer"] is True  # SGD under ZeRO-2 needs it
    assert ds["scheduler"]["type"] == "OneCycle" and ds["scheduler"]["params"]["cycle_max_lr"] == "auto"


def test_overlay_merges_sections_and_restarts_a_changed_type():
    base = {
        "optimizer": {"type": "AdamW", "params": {"lr": "auto", "betas": [0.9, 0.999]}},
        "zero_optimization": {"stage": 2},
    }
    merged = overlay(
        base,
        {
            "optimizer": {"type": "SGD", "params": {"momentum": 0.5}},
            "zero_optimization": {"overlap_comm": True},
        },
    )
    assert merged["optimizer"] == {
        "type": "SGD",
        "params": {"lr": "auto", "momentum": 0.5, "weight_decay": "auto"},
    }
    assert merged["zero_optimization"] == {"stage": 2, "overlap_comm": True}
    assert overlay(base, {"optimizer": {"params": {"lr": 0.1}}})["optimizer"]["params"] == {
        "lr": 0.1,
        "betas": [0.9, 0.999],
    }
    assert base["optimizer"]["params"]["lr"] == "auto"  # inputs are not modified


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"presets": ["zero_2"]}, "unknown preset 'zero_2', did you mean 'zero2'?"),
        ({"optimizer": "Adamx"}, "unknown optimizer 'Adamx', did you mean 'Adam'?"),
        (
            {"nvme_path": "/nvme", "offload_param": "cpu"},
            "--nvme-path needs --offload-optimizer nvme or --offload-param nvme",
        ),
        (
            {"zero_stage": 3, "offload_param": "nvme"},
            "zero_optimization.offload_param.nvme_path: device nvme needs nvme_path",
        ),
        ({"micro_batch": 0}, "train_micro_batch_size_per_gpu: must be a positive integer or 'auto'"),
        ({"lr": 0.1}, "--lr sets the lr of an optimizer DeepSpeed builds: add --optimizer"),
    ],
)
def test_impossible_choices_are_clear_errors(kwargs, message):
    presets = kwargs.pop("presets", ())
    with pytest.raises(DsdetError, match=message.replace("?", r"\?")) as caught:
        generate_deepspeed_config(presets, **kwargs)
    assert "\n" not in str(caught.value)


ENGINE_SCRIPT = """
import json, sys
import torch, deepspeed
from deepspeed import comm as dist

deepspeed.init_distributed(dist_backend="gloo")
for name, config in json.load(open(sys.argv[-1])).items():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=config)
    dtype = next(engine.module.parameters()).dtype
    for _ in range(config["gradient_accumulation_steps"]):
        loss = engine(torch.randn(config["train_micro_batch_size_per_gpu"], 8, dtype=dtype)).float().pow(2).mean()
        engine.backward(loss)
        engine.step()
    print(f"initialized {name} rank {dist.get_rank()} stage {engine.zero_optimization_stage()} step {engine.global_steps}", flush=True)
"""
# fp16 needs an accelerator (DeepSpeed's CPU accelerator refuses it); offload presets need the cpu_adam op built.
CPU_ENGINE_PRESETS = ["zero0", "zero1", "zero2", "zero3", "bf16", "activation_checkpointing"]


@pytest.mark.distributed
def test_deepspeed_initializes_the_presets_on_two_ranks(tmp_path):
    configs = {}
    for name in CPU_ENGINE_PRESETS:
        exp = ExperimentConfig.model_validate(
            {
                "train": {"batch_size": 2, "grad_accum_steps": 2},
                "deepspeed": generate_deepspeed_config(
                    [name], optimizer="AdamW"
                ),  # plain DeepSpeed builds it
            }
        )
        configs[name] = resolve_deepspeed_config(
            exp, world_size=2, steps_per_epoch=4, num_parameters=178, must_match=False
        )
    (tmp_path / "configs.json").write_text(json.dumps(configs))
    (tmp_path / "engine.py").write_text(ENGINE_SCRIPT)
    out = run(
        deepspeed_command(2, tmp_path / "engine.py", tmp_path / "configs.json"),
        cwd=tmp_path,
        timeout=600,
    )
    for name in CPU_ENGINE_PRESETS:
        stage = configs[name]["zero_optimization"]["stage"]
        for rank in (0, 1):
            assert f"initialized {name} rank {rank} stage {stage} step 1" in out.stdout, out.stdout[-3000:]
