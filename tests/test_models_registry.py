"""dsdet.models registry, weights files, norm conversion and the `dsdet models` command."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from dsdet.errors import DsdetError
from dsdet.models import build_model, list_models, register_model
from tests.runners import dsdet
from tests.test_models_support import (
    NUM_CLASSES,
    one_thread,  # noqa: F401  (fixture)
    tiny_images,
    tiny_targets,
)

pytestmark = pytest.mark.usefixtures("one_thread")

STOCK = {
    "ssdlite320_mobilenet_v3_large",
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "maskrcnn_resnet50_fpn",
    "retinanet_resnet50_fpn",
    "fcos_resnet50_fpn",
}
CUSTOM = {"fasterrcnn_resnext50_32x4d_fpn", "tinyssd", "ssdlite_mobilenet_v2", "yolo"}
SMALL = {"image_size": 96}


def _detect(model: nn.Module) -> list[dict]:
    model.eval()
    with torch.no_grad():
        return model(tiny_images())


def _trained_tinyssd_weights(path) -> nn.Module:
    """A tinyssd after one training step (so BatchNorm statistics are not the defaults), saved to `path`."""
    torch.manual_seed(0)
    model = build_model("tinyssd", NUM_CLASSES, **SMALL)
    model.train()
    sum(model(tiny_images(), tiny_targets()).values()).backward()
    torch.save(model.state_dict(), path)
    return model


def test_registry_lists_every_model_once_with_stock_flags():
    infos = list_models()
    names = [info.name for info in infos]
    assert sorted(names) == sorted(STOCK | CUSTOM)
    assert {info.name for info in infos if info.stock} == STOCK
    for info in infos:
        assert info.family and info.description and "\n" not in info.description


def test_registering_a_taken_name_fails():
    with pytest.raises(ValueError, match="yolo"):
        register_model("yolo", family="yolo", description="again")(lambda num_classes: nn.Identity())


def test_unknown_model_suggests_close_names():
    with pytest.raises(DsdetError, match=r"unknown model 'tinyssdd'.*did you mean tinyssd"):
        build_model("tinyssdd", NUM_CLASSES)


@pytest.mark.parametrize(
    ("name", "kwargs", "pattern"),
    [
        ("yolo", {"widht_mult": 0.5}, r"yolo takes no argument 'widht_mult'.*did you mean width_mult"),
        (
            "fasterrcnn_resnet50_fpn",
            {"min_sise": 128},
            r"fasterrcnn_resnet50_fpn takes no argument 'min_sise'",
        ),
        ("tinyssd", {"weights_backbone": "x"}, r"tinyssd takes no argument 'weights_backbone'"),
    ],
)
def test_unknown_kwarg_names_it_and_the_model(name, kwargs, pattern):
    with pytest.raises(DsdetError, match=pattern):
        build_model(name, NUM_CLASSES, **kwargs)


@pytest.mark.parametrize(
    ("num_classes", "kwargs", "pattern"),
    [
        (1, {}, "num_classes"),
        ("3", {}, "num_classes"),
        (NUM_CLASSES, {"width_mult": -1.0}, "cannot build yolo"),
    ],
)
def test_bad_values_are_user_errors(num_classes, kwargs, pattern):
    with pytest.raises(DsdetError, match=pattern):
        build_model("yolo", num_classes, **kwargs)


@pytest.mark.parametrize("wrapper", [None, "model", "module", "state_dict"])
def test_weights_load_from_plain_or_wrapped_state_dicts(tmp_path, wrapper):
    path = tmp_path / "weights.pt"
    state = _trained_tinyssd_weights(path).state_dict()
    torch.save(state if wrapper is None else {wrapper: state, "epoch": 3}, path)
    torch.manual_seed(1)
    loaded = build_model("tinyssd", NUM_CLASSES, weights=path, **SMALL)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_weights_errors_name_the_file_and_keys(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(DsdetError, match=f"{missing} does not exist"):
        build_model("tinyssd", NUM_CLASSES, weights=missing)

    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    with pytest.raises(DsdetError, match=f"cannot read {garbage}"):
        build_model("tinyssd", NUM_CLASSES, weights=garbage)

    tinyssd = tmp_path / "tinyssd.pt"
    _trained_tinyssd_weights(tinyssd)
    with pytest.raises(DsdetError, match=rf"{tinyssd} does not fit the model: missing backbone\.stem.*more"):
        build_model("yolo", NUM_CLASSES, weights=tinyssd)
    with pytest.raises(DsdetError, match=r"head\.classification_head\.module_list\.0\.weight has shape"):
        build_model("tinyssd", NUM_CLASSES + 2, weights=tinyssd)


def test_frozen_batchnorm_keeps_statistics_and_outputs(tmp_path):
    path = tmp_path / "tinyssd.pt"
    trained = _trained_tinyssd_weights(path)
    batchnorms = sum(isinstance(m, nn.BatchNorm2d) for m in trained.modules())
    frozen = build_model("tinyssd", NUM_CLASSES, weights=path, norm="frozen_batchnorm", **SMALL)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    frozen_layers = [m for m in frozen.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(frozen_layers) == batchnorms > 0
    assert all(not list(m.parameters()) for m in frozen_layers)  # nothing trainable in the norm layers
    state = frozen.state_dict()
    for key, value in trained.state_dict().items():
        if key.endswith("running_mean"):
            assert torch.equal(state[key], value), key
    for want, got in zip(_detect(trained), _detect(frozen), strict=True):
        torch.testing.assert_close(got["scores"], want["scores"])


@pytest.mark.parametrize("name", ["yolo", "fasterrcnn_mobilenet_v3_large_fpn"])
def test_norm_conversions_replace_every_batchnorm(name):
    kwargs = SMALL if name == "yolo" else {"min_size": 96, "max_size": 96}
    sync = build_model(name, NUM_CLASSES, norm="sync_batchnorm", **kwargs)
    frozen = build_model(name, NUM_CLASSES, norm="frozen_batchnorm", **kwargs)
    plain = build_model(name, NUM_CLASSES, **kwargs)
    count = sum(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert count > 0
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in sync.modules()) == count
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in frozen.modules()) == count
    assert not any(isinstance(m, nn.BatchNorm2d) for m in (*sync.modules(), *frozen.modules()))
    sync.train()
    assert torch.isfinite(sum(sync(tiny_images(), tiny_targets()).values()))


def test_unknown_norm_is_a_user_error():
    with pytest.raises(DsdetError, match="model.norm: unknown norm 'groupnorm'"):
        build_model("tinyssd", NUM_CLASSES, norm="groupnorm")


def test_meta_device_build_checks_weights_without_copying(tmp_path):
    path = tmp_path / "tinyssd.pt"
    _trained_tinyssd_weights(path)
    with torch.device("meta"):
        model = build_model("tinyssd", NUM_CLASSES, weights=path, **SMALL)
        assert all(p.is_meta for p in model.parameters())
        with pytest.raises(DsdetError, match="does not fit"):
            build_model("tinyssd", NUM_CLASSES + 1, weights=path)


def test_models_command_lists_table_and_json():
    table = dsdet("models").stdout.splitlines()
    assert table[0].split()[:3] == ["name", "family", "params"]
    rows = {line.split()[0]: line for line in table[1:]}
    assert set(rows) == STOCK | CUSTOM
    assert "[torchvision]" in rows["fasterrcnn_resnet50_fpn"] and "[torchvision]" not in rows["yolo"]

    listed = json.loads(dsdet("models", "--json").stdout)
    by_name = {row["name"]: row for row in listed}
    assert set(by_name) == STOCK | CUSTOM
    # torchvision documents 41.8M parameters for Faster R-CNN R50-FPN with 91 classes.
    assert by_name["fasterrcnn_resnet50_fpn"]["params_millions"] == pytest.approx(41.8, abs=0.1)
    assert by_name["yolo"]["family"] == "yolo" and by_name["yolo"]["stock_torchvision"] is False
    assert all(0 < row["params_millions"] < 100 for row in listed)
