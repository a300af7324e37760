"""Detectors' pipeline layers in one process: same loss and gradients as the plain model, key maps, refusals."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn
from torchvision.models import detection
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD, SSDHead

from dsdet.engine.pipeline import (
    Packer,
    detector_layers,
    pipeline_state_dict,
    plain_state_dict,
    to_pipeline,
)
from dsdet.engine.pipeline.boundary import fold, unfold
from dsdet.engine.pipeline.parts import ChainStep, WholeBackbone
from dsdet.errors import DsdetError
from dsdet.models import build_model
from tests.scripts.pipeline_data import NUM_CLASSES, build_detector, synthetic_batch

RCNN_SMALL = {"min_size": 128, "max_size": 128, "rpn_post_nms_top_n_train": 32}
RCNN_EVERY_SAMPLE = {"rpn_batch_size_per_image": 10**6, "box_batch_size_per_image": 10**6}


class TwoMapBackbone(nn.Module):
    """A backbone dsdet has no finer pipeline form for: it runs as one WholeBackbone layer."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.out_channels = [8, 8]

    def forward(self, x):
        first = self.stem(x)
        return OrderedDict([("0", first), ("1", self.down(first))])


def custom_ssd() -> SSD:
    anchors = DefaultBoxGenerator([[2], [2]])
    head = SSDHead([8, 8], anchors.num_anchors_per_location(), NUM_CLASSES)
    return SSD(TwoMapBackbone(), anchors, (64, 64), NUM_CLASSES, head=head)


DETECTORS = {
    "ssdlite320": lambda: build_detector("ssd"),
    "tinyssd": lambda: build_model("tinyssd", NUM_CLASSES, image_size=64),
    "ssdlite_mobilenet_v2": lambda: build_model(
        "ssdlite_mobilenet_v2", NUM_CLASSES, image_size=64, width_mult=0.35
    ),
    "custom_ssd": custom_ssd,
    "fasterrcnn_mobilenet": lambda: build_detector("rcnn"),
    "fasterrcnn_resnet50": lambda: detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=NUM_CLASSES, **RCNN_SMALL, **RCNN_EVERY_SAMPLE
    ),
}


def pipelined_loss(model: nn.Module, images: list, targets: list) -> torch.Tensor:
    """The pipeline form run in one process, folding and unfolding the carry between every two layers."""
    detector = detector_layers(model)
    carry, labels = Packer(model.transform)(images, targets)
    for layer in detector.layers[:-1]:
        carry = unfold(fold(layer(carry)))
    return detector.head.loss(detector.head(carry), labels)


@pytest.mark.parametrize("name", list(DETECTORS))
def test_pipeline_form_has_the_plain_loss(name):
    torch.manual_seed(0)
    model = DETECTORS[name]().train()
    images, targets = synthetic_batch(7, 2)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        plain = sum(model(images, targets).values())
        model.load_state_dict(state)  # undo the BatchNorm statistics update
        piped = pipelined_loss(model, images, targets)
    assert torch.equal(plain, piped), (float(plain), float(piped))


def test_pipeline_form_has_the_plain_gradients():
    torch.manual_seed(0)
    model = build_model("tinyssd", NUM_CLASSES, image_size=64).train()
    images, targets = synthetic_batch(8, 2)
    sum(model(images, targets).values()).backward()
    plain = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    pipelined_loss(model, images, targets).backward()
    for key, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, plain[key], rtol=1e-5, atol=1e-7, msg=key)


def test_backbone_forms():
    ssdlite = detector_layers(build_detector("ssd")).layers
    assert len(ssdlite) > 20 and all(isinstance(layer, ChainStep) for layer in ssdlite[:-1])
    assert isinstance(detector_layers(custom_ssd()).layers[0], WholeBackbone)
    resnet = detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=NUM_CLASSES)
    steps = [layer for layer in detector_layers(resnet).layers if isinstance(layer, ChainStep)]
    assert steps[0].paths == ("backbone.body.conv1",)
    assert steps[1].paths == ("backbone.body.bn1", "backbone.body.relu", "backbone.body.maxpool")
    for step in steps:  # no layer starts with a parameter-free (possibly in-place) module
        assert any(True for _ in step.get_submodule(step.paths[0]).parameters()), step.paths


@pytest.mark.parametrize("family", ["ssd", "rcnn"])
def test_state_dict_round_trip_and_layer_keys(family):
    model = build_detector(family)
    detector = detector_layers(model)
    plain = model.state_dict()
    per_layer = pipeline_state_dict(detector.layer_keys, plain)
    assert sorted(per_layer) == list(range(len(detector.layers)))
    for index, layer in enumerate(detector.layers):
        assert list(layer.state_dict()) == list(per_layer[index])
    back = plain_state_dict(per_layer)
    assert sorted(back) == sorted(plain)
    assert all(back[k] is plain[k] for k in plain)

    other = build_detector(family, seed=1)
    other.load_state_dict(back, strict=True)
    assert all(torch.equal(other.state_dict()[k], plain[k]) for k in plain)


def test_state_dicts_that_do_not_fit_are_refused(tmp_path):
    detector = detector_layers(build_detector("ssd"))
    plain = detector.layers[0].state_dict()
    with pytest.raises(DsdetError, match="missing"):
        pipeline_state_dict(detector.layer_keys, plain)
    full = {k: v for layer in detector.layers for k, v in layer.state_dict().items()}
    with pytest.raises(DsdetError, match=r"unexpected \['extra.weight'\]"):
        pipeline_state_dict(detector.layer_keys, {**full, "extra.weight": torch.zeros(1)})
    with pytest.raises(DsdetError, match="appears in two pipeline layers"):
        plain_state_dict({0: plain, 1: plain})
    with pytest.raises(DsdetError, match="no pipeline layer files"):
        plain_state_dict(tmp_path)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3),
            "MaskRCNN has no pipeline form: mask and keypoint heads",
        ),
        (
            lambda: detection.retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3),
            "RetinaNet has no pipeline form",
        ),
        (lambda: nn.Linear(2, 2), "Linear has no pipeline form"),
    ],
)
def test_models_without_a_pipeline_form_are_refused(build, message):
    with pytest.raises(DsdetError, match=message):
        to_pipeline(build(), num_stages=2)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_stages": 0}, r"deepspeed.pipeline.stages: must be an integer from 1 to \d+"),
        ({"num_stages": 999}, "deepspeed.pipeline.stages"),
        ({"num_stages": 2, "partition_method": "layers"}, "deepspeed.pipeline.partition: 'layers' is not"),
        ({"num_stages": 2, "partition_method": "type:Transformer"}, "matches no layer of"),
        ({"num_stages": 2, "activation_checkpoint_interval": -1}, "activation_checkpoint_interval: must be"),
        ({"num_stages": 2}, "needs torch.distributed"),
    ],
)
def test_bad_pipeline_options_are_named(options, message):
    with pytest.raises(DsdetError, match=message):
        to_pipeline(build_model("tinyssd", NUM_CLASSES, image_size=64), **options)


def test_weights_outside_the_pipeline_form_or_shared_by_two_layers_are_refused():
    extended = custom_ssd()
    extended.calibration = nn.Linear(2, 2)
    with pytest.raises(
        DsdetError, match=r"SSD has weights outside its pipeline form, e\.g\. \['calibration.weight'"
    ):
        detector_layers(extended)
    tied = custom_ssd()
    tied.head.regression_head.module_list[0] = tied.backbone.stem[0]
    with pytest.raises(DsdetError, match="a tensor is shared by pipeline layers 0 and 1"):
        detector_layers(tied)


def test_faster_rcnn_loss_refuses_eval_mode():
    model = build_detector("rcnn")
    detector = detector_layers(model)
    carry, labels = Packer(model.transform)(*synthetic_batch(9, 1))
    for layer in detector.layers:
        carry = layer(carry)
    detector.head.eval()
    with pytest.raises(DsdetError, match="Faster R-CNN computes losses only in training mode"):
        detector.head.loss(carry, labels)
