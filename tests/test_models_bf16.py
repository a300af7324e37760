"""train.precision=bf16 on CPU: every registered model trains through a real DeepSpeed engine (torch_autocast,
fp32 master weights) and predicts under the same autocast, with no dtype error and bf16 convolutions."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from dsdet.config import load_experiment, resolve_deepspeed_config
from dsdet.config.experiment import CpuSection
from dsdet.engine.cpu import configure_cpu_ranks
from dsdet.engine.cpu.flags import cpu_flags
from dsdet.engine.data import build_data
from dsdet.engine.evaluation import predict_batches
from dsdet.engine.run import build_optimizer, count_parameters, model_spec
from dsdet.engine.strategy import DeepSpeedStrategy
from dsdet.models import list_models
from tests.test_models_support import MODEL_TEST_KWARGS

STEPS = 2


def bf16_experiment(data_root, out, name: str):
    kwargs = ", ".join(f"{k}: {v}" for k, v in MODEL_TEST_KWARGS[name].items())
    return load_experiment(
        None,
        [
            f"data.root={data_root}",
            f"train.output_dir={out}",
            f"model.name={name}",
            f"model.kwargs={{{kwargs}}}",
            "train.batch_size=2",
            "train.precision=bf16",
            "train.lr=0.001",
            "deepspeed.zero_optimization.stage=2",
            "data.num_workers=0",
        ],
    )


def record_conv_dtypes(model: nn.Module) -> set[torch.dtype]:
    """Output dtypes of every convolution, filled in by forward hooks as the model runs."""
    seen: set[torch.dtype] = set()
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
    return seen


@pytest.mark.parametrize("name", [info.name for info in list_models()])
def test_bf16_autocast_trains_and_predicts(name, mini_data_dir, tmp_path, process_group):
    exp = bf16_experiment(mini_data_dir, tmp_path, name)
    data = build_data(exp, 1, 0)
    spec = model_spec(exp, data.num_classes)
    ds_config = resolve_deepspeed_config(
        exp, world_size=1, steps_per_epoch=len(data.train_loader), num_parameters=count_parameters(spec)
    )
    assert ds_config["torch_autocast"] == {"enabled": True, "dtype": "bfloat16"}
    strategy = DeepSpeedStrategy(ds_config)
    assert strategy.compute_dtype == torch.bfloat16
    strategy.prepare(strategy.build(spec), build_optimizer(exp, strategy.ds_config, len(data.train_loader)))
    optimizer = strategy.engine.basic_optimizer
    assert type(optimizer) is torch.optim.AdamW and optimizer.defaults["fused"]  # dsdet's CPU choice
    conv_dtypes = record_conv_dtypes(strategy.module)

    for _, batch in zip(range(STEPS), data.train_loader, strict=False):
        result = strategy.train_step([batch], stop=False)
        assert result.finite and result.stepped, (name, result.losses)
    assert strategy.global_step == STEPS
    assert conv_dtypes == {torch.bfloat16}, conv_dtypes  # the forward really ran under bf16 autocast
    assert all(p.dtype == torch.float32 for p in strategy.module.parameters())  # fp32 master weights
    assert all(torch.isfinite(p).all() for p in strategy.module.parameters())

    conv_dtypes.clear()
    batches = zip(range(1), data.val_loader, strict=False)
    (_, _, predictions), *_ = predict_batches(
        strategy.eval_model(), (b for _, b in batches), strategy.device, strategy.autocast
    )
    assert conv_dtypes == {torch.bfloat16}
    for prediction in predictions:
        assert prediction["boxes"].dtype == prediction["scores"].dtype == torch.float32
        assert torch.isfinite(prediction["boxes"]).all() and torch.isfinite(prediction["scores"]).all()
    strategy.engine.destroy()


def test_bf16_on_a_cpu_without_bf16_units_warns(caplog, process_group):
    native = bool({"avx512_bf16", "amx_bf16"} & cpu_flags())
    settings = CpuSection(collectives="gloo", malloc="system")
    with caplog.at_level(logging.WARNING, logger="dsdet"):
        for precision in ("bf16", "fp32"):  # fp32: never
            configure_cpu_ranks(
                settings, world_size=1, ranks_on_node=1, first_on_node=False, precision=precision
            )
    warnings = [r.message for r in caplog.records if "train.precision=bf16 on a CPU without" in r.message]
    assert len(warnings) == (0 if native else 1), warnings
