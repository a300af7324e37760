"""Packing detection batches into fixed-shape tensors for pipeline stages, the inverse, and stage boundaries."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from dsdet.engine.pipeline import PackedBatches, Packer, canvas_size, unpack_batch
from dsdet.engine.pipeline.boundary import fold, unfold
from dsdet.errors import DsdetError
from tests.scripts.pipeline_data import synthetic_batch

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def rcnn_transform(min_size: int = 96, max_size: int = 128) -> GeneralizedRCNNTransform:
    return GeneralizedRCNNTransform(min_size, max_size, MEAN, STD)


def ssd_transform(side: int = 64) -> GeneralizedRCNNTransform:
    return GeneralizedRCNNTransform(
        side, side, [0.5] * 3, [0.5] * 3, size_divisible=1, fixed_size=(side, side)
    )


def test_canvas_is_the_fixed_size_or_max_size_rounded_up():
    assert canvas_size(ssd_transform(61)) == (61, 61)
    assert canvas_size(rcnn_transform(96, 130)) == (160, 160)


def test_rcnn_batch_of_mixed_shapes_packs_onto_one_canvas_and_unpacks_to_the_transforms_output():
    images, targets = synthetic_batch(0, 1, height=60, width=100)
    more_images, more_targets = synthetic_batch(1, 1, height=100, width=50)
    images, targets = images + more_images, targets + more_targets
    transform = rcnn_transform()
    (packed, geometry), (boxes, labels, counts) = Packer(transform)(images, targets)

    assert packed.shape == (2, 3, 128, 128) and geometry.dtype == torch.int64
    expected, resized = transform.train()(images, [dict(t) for t in targets])
    assert geometry.tolist() == [[h, w, 128, 128] for h, w in expected.image_sizes]
    image_list, unpacked = unpack_batch((packed, geometry), (boxes, labels, counts))
    assert image_list.image_sizes == expected.image_sizes
    for index, (h, w) in enumerate(expected.image_sizes):
        assert torch.equal(image_list.tensors[index, :, :h, :w], expected.tensors[index, :, :h, :w])
        assert packed[index, :, h:, :].abs().sum() == 0 and packed[index, :, :, w:].abs().sum() == 0
        assert torch.equal(unpacked[index]["boxes"], resized[index]["boxes"])
        assert torch.equal(unpacked[index]["labels"], targets[index]["labels"])
    assert counts.tolist() == [2, 2] and boxes.shape == (2, 2, 4)


def test_packing_is_the_transform_itself_when_the_batch_fills_the_canvas():
    images, targets = synthetic_batch(2, 2, height=128, width=128)
    transform = rcnn_transform(128, 128)
    (packed, _), _ = Packer(transform)(images, targets)
    assert torch.equal(packed, transform(images, None)[0].tensors)


def test_ssd_boxes_follow_the_fixed_size_resize_and_pad_with_background():
    images, targets = synthetic_batch(3, 2, height=128, width=96)
    targets[1] = {"boxes": targets[1]["boxes"][:1], "labels": targets[1]["labels"][:1], "image_id": 7}
    (packed, geometry), (boxes, labels, counts) = Packer(ssd_transform(64), max_boxes=5)(images, targets)

    assert packed.shape == (2, 3, 64, 64) and geometry.tolist() == [[64, 64, 64, 64]] * 2
    scale = torch.tensor([64 / 96, 64 / 128, 64 / 96, 64 / 128])
    torch.testing.assert_close(boxes[0, :2], targets[0]["boxes"] * scale)
    assert boxes.shape == (2, 5, 4) and counts.tolist() == [2, 1]
    assert labels[1].tolist() == [1, 0, 0, 0, 0] and boxes[1, 1:].abs().sum() == 0


def test_packed_batches_yield_what_pipeline_engine_takes_from_its_iterator():
    batches = [synthetic_batch(seed, 2, height=64, width=64) for seed in range(3)]
    items = list(PackedBatches(batches, Packer(ssd_transform(32))))
    assert len(items) == 3
    for inputs, labels in items:
        assert isinstance(inputs, tuple) and isinstance(labels, tuple)
        assert [t.dtype for t in inputs] == [torch.float32, torch.int64]
        assert [t.dtype for t in labels] == [torch.float32, torch.int64, torch.int64]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t[1].pop("labels"), "sample 1: target needs 'boxes' and 'labels'"),
        (lambda t: t[0].update(boxes=torch.zeros(2, 3)), "sample 0: boxes must be [N, 4]"),
        (
            lambda t: t[1].update(image_id=42, boxes=torch.tensor([[5.0, 5, 5, 9], [1, 1, 8, 8]])),
            "image_id 42",
        ),
    ],
)
def test_bad_targets_are_named(change, message):
    images, targets = synthetic_batch(4, 2, height=64, width=64)
    change(targets)
    with pytest.raises(DsdetError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Packer(rcnn_transform())(images, targets)


def test_degenerate_box_error_shows_the_users_box():
    images, targets = synthetic_batch(4, 1, height=64, width=64)
    targets[0]["boxes"] = torch.tensor([[10.0, 20.0, 10.0, 30.0], [1, 1, 8, 8]])
    with pytest.raises(DsdetError, match=r"sample 0: box \[10.0, 20.0, 10.0, 30.0\] has no positive width"):
        Packer(rcnn_transform())(images, targets)


def test_too_many_boxes_and_too_small_canvas_are_refused():
    images, targets = synthetic_batch(5, 2, height=64, width=64)
    with pytest.raises(DsdetError, match="sample 0: 2 boxes, more than max_boxes=1"):
        Packer(ssd_transform(), max_boxes=1)(images, targets)
    with pytest.raises(DsdetError, match=r"larger than the pipeline canvas \(64, 64\)"):
        Packer(rcnn_transform(), canvas=(64, 64))(images, targets)
    with pytest.raises(DsdetError, match="one target per image"):
        Packer(rcnn_transform())(images, targets[:1])


def test_fold_and_unfold_carry_maps_and_their_gradients_across_a_boundary():
    maps = [torch.randn(2, 4, 8, 8, requires_grad=True), torch.randn(2, 6, 4, 4, requires_grad=True)]
    geometry = torch.tensor([[32, 32, 32, 32]] * 2)
    flat, shapes, sent_geometry = fold((*maps, geometry))
    assert flat.dim() == 1 and shapes.tolist() == [[2, 4, 8, 8], [2, 6, 4, 4]]

    received = flat.detach().requires_grad_()
    *unfolded, got_geometry = unfold((received, shapes, sent_geometry))
    assert torch.equal(got_geometry, geometry)
    weights = [torch.randn_like(m) for m in maps]
    sum((u * w).sum() for u, w in zip(unfolded, weights, strict=True)).backward()
    flat.backward(received.grad)  # what DeepSpeed does with the gradient the next stage sends back
    for m, w in zip(maps, weights, strict=True):
        assert torch.equal(m.grad, w)


def test_fold_of_frozen_maps_still_takes_part_in_autograd():
    frozen = [torch.randn(1, 2, 4, 4), torch.tensor([[16, 16, 16, 16]])]
    flat, _, _ = fold(tuple(frozen))
    assert flat.requires_grad
