"""train.cpu.roi_align=sparse: RoIAlign trained as a sparse matrix product gives torchvision's values and gradients
(up to float rounding) for every kind of RoI, in Faster and Mask R-CNN too, and leaves inference untouched."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.ops import MultiScaleRoIAlign

from dsdet.errors import DsdetError
from dsdet.models import build_model
from dsdet.models.roi_align import SparseMultiScaleRoIAlign, roi_align
from tests.test_models_support import MODEL_TEST_KWARGS, NUM_CLASSES, tiny_images, tiny_targets

SCALE = 0.25  # a stride-4 feature map of a 64 x 48 px image


def awkward_rois() -> torch.Tensor:
    """RoIs [image, x1, y1, x2, y2] of both images: ordinary, sub-pixel, degenerate (x2 < x1), on the border,
    partly and wholly outside the image, and covering all of it."""
    g = torch.Generator().manual_seed(0)
    corner = torch.rand(40, 2, generator=g) * 80 - 10
    size = torch.rand(40, 2, generator=g) * 40
    boxes = torch.cat([corner, corner + size], dim=1)
    special = torch.tensor(
        [
            [10.0, 10.0, 10.5, 10.3],  # smaller than a pixel
            [30.0, 20.0, 20.0, 10.0],  # x2 < x1, y2 < y1
            [0.0, 0.0, 64.0, 48.0],  # the whole image
            [60.0, 40.0, 64.0, 48.0],  # the bottom-right corner
            [-30.0, -30.0, -10.0, -10.0],  # outside
            [50.0, 30.0, 120.0, 90.0],  # partly outside
        ]
    )
    boxes = torch.cat([boxes, special])
    image = torch.arange(len(boxes)) % 2
    return torch.cat([image[:, None].float(), boxes], dim=1)


def features(channels_last: bool) -> torch.Tensor:
    x = torch.randn(2, 8, 12, 16, generator=torch.Generator().manual_seed(1))
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    return x.requires_grad_()


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [1, 2, 3])
@pytest.mark.parametrize("channels_last", [False, True])
def test_values_and_gradients_equal_torchvision(aligned, sampling_ratio, channels_last):
    x, rois = features(channels_last), awkward_rois()
    settings = ((7, 7), SCALE, sampling_ratio, aligned)
    expected = torchvision.ops.roi_align(x, rois, *settings)
    pooled = roi_align(x, rois, *settings)
    torch.testing.assert_close(pooled, expected, rtol=1e-5, atol=1e-6)
    grad = torch.randn(expected.shape, generator=torch.Generator().manual_seed(2))
    (expected_grad,) = torch.autograd.grad(expected, x, grad)
    (got_grad,) = torch.autograd.grad(pooled, x, grad)
    torch.testing.assert_close(got_grad, expected_grad, rtol=1e-5, atol=1e-5)
    assert got_grad.is_contiguous(memory_format=torch.channels_last)  # what the convolutions want back


def test_bf16_autocast_matches_torchvision():
    x, rois = features(True), awkward_rois()
    grad = torch.randn(len(rois), 8, 7, 7, generator=torch.Generator().manual_seed(2))
    results = []
    for pool in (torchvision.ops.roi_align, roi_align):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            pooled = pool(x.to(torch.bfloat16), rois, (7, 7), SCALE, 2, False)
        (got,) = torch.autograd.grad(pooled, x, grad.to(pooled.dtype))
        results.append((pooled, got))
    (expected, expected_grad), (pooled, got_grad) = results
    assert pooled.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(pooled, expected)  # bf16 tolerances
    # fp32 leaves of bf16 computations: bf16 tolerances (a one-ulp difference is 0.4 % relative)
    torch.testing.assert_close(got_grad, expected_grad, rtol=1.6e-2, atol=1e-5)


def test_no_rois():
    x = features(True)
    pooled = roi_align(x, torch.zeros(0, 5), (7, 7), SCALE, 2)
    assert pooled.shape == (0, 8, 7, 7)
    pooled.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_inference_and_adaptive_grids_run_torchvision_exactly():
    x, rois = features(True), awkward_rois()
    with torch.no_grad():
        assert torch.equal(
            roi_align(x, rois, (7, 7), SCALE, 2), torchvision.ops.roi_align(x, rois, (7, 7), SCALE, 2)
        )
    adaptive = roi_align(x, rois, (7, 7), SCALE, -1)
    assert adaptive.grad_fn.name() != "_SparseRoIAlignBackward"
    assert torch.equal(adaptive, torchvision.ops.roi_align(x, rois, (7, 7), SCALE, -1))


@pytest.mark.parametrize("name", ["fasterrcnn_mobilenet_v3_large_fpn", "maskrcnn_resnet50_fpn"])
def test_detector_training_step_matches_torchvision_pooling(name):
    models = {}
    for pooling in ("torchvision", "sparse"):
        torch.manual_seed(0)
        models[pooling] = build_model(name, NUM_CLASSES, roi_align=pooling, **MODEL_TEST_KWARGS[name])
    stock, sparse = models["torchvision"], models["sparse"]
    pools = [m for m in sparse.modules() if isinstance(m, MultiScaleRoIAlign)]
    assert pools and all(type(m) is SparseMultiScaleRoIAlign for m in pools)  # box (and mask) heads
    assert sparse.state_dict().keys() == stock.state_dict().keys()

    losses = {}
    for pooling, model in models.items():
        torch.manual_seed(1)  # the same sampled proposals on both sides
        model.train()
        loss_dict = model(tiny_images(), tiny_targets())
        losses[pooling] = {k: float(v.detach()) for k, v in loss_dict.items()}
        sum(loss_dict.values()).backward()
    assert losses["sparse"] == pytest.approx(losses["torchvision"], rel=1e-5)
    for (key, p_stock), p_sparse in zip(stock.named_parameters(), sparse.parameters(), strict=True):
        # equal up to float rounding: relative to each gradient's scale, with a floor for the gradients that are
        # zero but for rounding (biases in front of BatchNorm)
        if p_stock.grad is not None:
            error = (p_sparse.grad - p_stock.grad).abs().max()
            assert error <= 1e-4 * p_stock.grad.abs().max() + 1e-7, key

    stock.eval(), sparse.eval()
    with torch.no_grad():  # inference runs torchvision's kernel: identical predictions
        for a, b in zip(stock(tiny_images()), sparse(tiny_images()), strict=True):
            assert all(torch.equal(a[k], b[k]) for k in a)


def test_unknown_pooling_is_a_one_line_error():
    with pytest.raises(DsdetError, match=r"^train.cpu.roi_align: must be 'sparse' or 'torchvision', got 'fast'$"):
        build_model("fasterrcnn_mobilenet_v3_large_fpn", NUM_CLASSES, roi_align="fast")
