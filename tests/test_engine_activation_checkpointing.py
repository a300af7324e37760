"""Activation checkpointing of backbone blocks: same losses and gradients as without, in-process and on 2 ranks."""

from __future__ import annotations

import pytest
import torch

from dsdet.engine.activation_checkpointing import checkpoint_backbone_blocks
from dsdet.errors import DsdetError
from dsdet.models import build_model
from tests.runners import deepspeed_train, read_jsonl
from tests.test_engine_train import small_run

SECTION = {"partition_activations": True, "cpu_checkpointing": True, "profile": False}


def batch():
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 128, 128, generator=g) for _ in range(2)]
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0]]), "labels": torch.tensor([1])},
        {
            "boxes": torch.tensor([[30.0, 20.0, 110.0, 90.0], [5.0, 5.0, 40.0, 30.0]]),
            "labels": torch.tensor([2, 1]),
        },
    ]
    return images, targets


def losses_and_grads(name: str, checkpointed: bool, **kwargs):
    torch.manual_seed(0)
    model = build_model(name, 3, **kwargs)
    keys = list(model.state_dict())
    if checkpointed:
        assert checkpoint_backbone_blocks(model, SECTION) > 0
    assert list(model.state_dict()) == keys  # exports are unchanged
    model.train()
    losses = model(*batch())
    sum(losses.values()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: float(v.detach()) for k, v in losses.items()}, grads


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("yolo", {"image_size": 128}),
        ("ssdlite_mobilenet_v2", {"image_size": 128, "width_mult": 0.5}),
        ("ssdlite320_mobilenet_v3_large", {}),
    ],
)
def test_same_losses_and_gradients(name, kwargs, process_group):
    plain_losses, plain_grads = losses_and_grads(name, False, **kwargs)
    ckpt_losses, ckpt_grads = losses_and_grads(name, True, **kwargs)
    assert ckpt_losses == pytest.approx(plain_losses, rel=1e-5)
    assert plain_grads.keys() == ckpt_grads.keys() and plain_grads
    for key in plain_grads:
        torch.testing.assert_close(ckpt_grads[key], plain_grads[key], rtol=1e-4, atol=1e-6, msg=key)


def test_model_without_blocks_is_refused(process_group):
    with pytest.raises(DsdetError, match="no checkpointable backbone blocks"):
        checkpoint_backbone_blocks(build_model("tinyssd", 3, image_size=128), SECTION)


@pytest.mark.distributed
def test_two_ranks_train_the_same_with_checkpointing(mini_data_dir, tmp_path):
    runs = {}
    for flag in (False, True):
        out = tmp_path / f"ac_{flag}"
        deepspeed_train(
            small_run(
                mini_data_dir,
                out,
                "model.name=yolo",
                "train.max_steps=3",
                f"train.activation_checkpointing={str(flag).lower()}",
                "deepspeed.activation_checkpointing={partition_activations: true, cpu_checkpointing: true}",
            )
        )
        runs[flag] = [row["loss"] for row in read_jsonl(out / "train_log.jsonl")]
    assert runs[True] == pytest.approx(runs[False], rel=1e-4)
