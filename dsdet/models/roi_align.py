"""RoIAlign for training on CPU as a sparse matrix product: the same values and gradients as torchvision's
kernels up to float rounding, about 6x faster for forward and backward together on Faster R-CNN's box head.

torchvision's CPU backward recomputes the bilinear sampling weights of every RoI bin for every channel and
scatters them one float at a time: for Faster R-CNN's box head it was a quarter of a whole training step on
the benchmark machine (benchmarks/FINDINGS.md). The weights depend on the RoIs only, so here they are built
once per call as a sparse matrix M (feature pixels x RoI bins, 4 entries per sample point, 16 per bin with the
2x2 sampling grid of torchvision's detectors). Pooling is M.T @ pixels and the feature gradient M @ (bin
gradients), products over whole channel vectors of channels-last features. Inference (no gradient), CUDA
tensors and an adaptive sampling grid (`sampling_ratio` <= 0) use torchvision's kernels as they are, so
predictions are unchanged.
"""

from __future__ import annotations

import torch
import torchvision
from torch import Tensor, nn
from torchvision.ops.poolers import MultiScaleRoIAlign, _convert_to_roi_format, _setup_scales


def _axis_samples(start: Tensor, length: Tensor, bins: int, grid: int, size: int) -> tuple[Tensor, Tensor]:
    """Along one axis of every RoI: the two neighbouring pixel indices of each sample point and their linear
    interpolation weights (zero for a point outside the feature map), shaped [RoIs, bins, grid, 2]; the same
    arithmetic as torchvision's `bilinear_interpolate_gradient`."""
    bin_size = length / bins
    b = torch.arange(bins, dtype=start.dtype, device=start.device)
    g = torch.arange(grid, dtype=start.dtype, device=start.device)
    bin_start = start[:, None, None] + b[None, :, None] * bin_size[:, None, None]
    point = bin_start + (g[None, None, :] + 0.5) * bin_size[:, None, None] / grid
    inside = (point >= -1.0) & (point <= size)
    point = point.clamp(min=0.0)
    low = point.long()
    at_edge = low >= size - 1
    low = torch.where(at_edge, size - 1, low)
    high = torch.where(at_edge, size - 1, low + 1)
    point = torch.where(at_edge, low.to(point.dtype), point)
    upper_weight = point - low
    weights = torch.stack([1.0 - upper_weight, upper_weight], dim=-1) * inside[..., None]
    return torch.stack([low, high], dim=-1), weights


def sampling_matrix(
    rois: Tensor,
    feature_shape: torch.Size,
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """Sparse [N*H*W, RoIs*bins] matrix whose column (roi, bin) holds the weights with which RoIAlign averages
    feature pixels (n, y, x) into that bin: forward(features) == M.T @ pixels, and d features == M @ d bins."""
    batch, _, height, width = feature_shape
    pooled_h, pooled_w = output_size
    rois = rois.float()
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (rois[:, i] * spatial_scale - offset for i in range(1, 5))
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # torchvision forces malformed RoIs to 1x1
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    y_index, y_weight = _axis_samples(y1, roi_h, pooled_h, sampling_ratio, height)  # [K, ph, g, 2]
    x_index, x_weight = _axis_samples(x1, roi_w, pooled_w, sampling_ratio, width)  # [K, pw, g, 2]
    # every (bin row, bin column, y sample, y neighbour, x sample, x neighbour) of every RoI
    image = rois[:, 0].long() * (height * width)
    pixel = (
        image[:, None, None, None, None, None, None]
        + y_index[:, :, None, :, :, None, None] * width
        + x_index[:, None, :, None, None, :, :]
    )
    weight = (
        y_weight[:, :, None, :, :, None, None]
        * x_weight[:, None, :, None, None, :, :]
        / (sampling_ratio * sampling_ratio)
    )
    num_bins = rois.shape[0] * pooled_h * pooled_w
    pixel = pixel.reshape(num_bins, 4 * sampling_ratio * sampling_ratio)  # 2x2 neighbours of each sample
    column = torch.arange(num_bins, device=rois.device)[:, None].expand_as(pixel)
    return torch.sparse_coo_tensor(
        torch.stack([pixel.reshape(-1), column.reshape(-1)]),
        weight.reshape(-1),
        (batch * height * width, num_bins),
        check_invariants=False,  # built in range by construction
    )


class _SparseRoIAlign(torch.autograd.Function):
    """RoIAlign as pooled = M.T @ pixels, with d pixels = M @ d pooled (M from `sampling_matrix`)."""

    @staticmethod
    def forward(ctx, features, rois, output_size, spatial_scale, sampling_ratio, aligned):
        channels = features.shape[1]
        matrix = sampling_matrix(rois, features.shape, output_size, spatial_scale, sampling_ratio, aligned)
        ctx.save_for_backward(matrix)
        ctx.feature_shape, ctx.dtype = features.shape, features.dtype
        with torch.autocast(features.device.type, enabled=False):
            pixels = features.float().permute(0, 2, 3, 1).reshape(-1, channels)  # a view when channels-last
            pooled = torch.sparse.mm(matrix.t(), pixels)  # [RoIs*bins, C]
        return pooled.to(features.dtype).view(-1, *output_size, channels).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad_pooled):
        (matrix,) = ctx.saved_tensors
        batch, channels, height, width = ctx.feature_shape
        with torch.autocast(grad_pooled.device.type, enabled=False):
            per_bin = grad_pooled.float().permute(0, 2, 3, 1).reshape(-1, channels)
            per_pixel = torch.sparse.mm(matrix, per_bin)  # [N*H*W, C]
        # channels-last, as the convolutions that produced the features want their gradient
        grad_features = per_pixel.to(ctx.dtype).view(batch, height, width, channels).permute(0, 3, 1, 2)
        return grad_features, None, None, None, None, None


def roi_align(
    features: Tensor,
    rois: Tensor,
    output_size: tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """`torchvision.ops.roi_align` (rois as [K, 5] with the image index first), computed as a sparse matrix
    product on CPU whenever gradients flow to `features` and the sampling grid is fixed; torchvision's kernel
    otherwise (inference, CUDA, adaptive grids)."""
    sparse = (
        features.device.type == "cpu"
        and sampling_ratio > 0
        and torch.is_grad_enabled()
        and features.requires_grad
    )
    if not sparse:
        return torchvision.ops.roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)
    return _SparseRoIAlign.apply(features, rois, tuple(output_size), spatial_scale, sampling_ratio, aligned)


class SparseMultiScaleRoIAlign(MultiScaleRoIAlign):
    """torchvision's MultiScaleRoIAlign (same settings, level mapping and outputs) on dsdet's `roi_align`."""

    def forward(
        self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> Tensor:
        features = [v for k, v in x.items() if k in self.featmap_names]
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(
                features, image_shapes, self.canonical_scale, self.canonical_level
            )
        rois = _convert_to_roi_format(boxes)
        pool = dict(output_size=self.output_size, sampling_ratio=self.sampling_ratio)
        if len(features) == 1:
            return roi_align(features[0], rois, spatial_scale=self.scales[0], **pool)
        levels = self.map_levels(boxes)
        pooled = features[0].new_zeros((len(rois), features[0].shape[1], *self.output_size))
        for level, (feature, scale) in enumerate(zip(features, self.scales, strict=True)):
            in_level = torch.where(levels == level)[0]
            pooled[in_level] = roi_align(feature, rois[in_level], spatial_scale=scale, **pool).to(
                pooled.dtype
            )
        return pooled


def use_sparse_roi_align(model: nn.Module) -> nn.Module:
    """Make every torchvision MultiScaleRoIAlign of `model` (the box and mask heads of Faster and Mask R-CNN)
    train on CPU as a sparse matrix product; returns `model`. The poolers hold no state, so state dicts and
    exports are unchanged, and inference still runs torchvision's kernel."""
    for module in model.modules():
        if type(module) is MultiScaleRoIAlign:
            module.__class__ = SparseMultiScaleRoIAlign
    return model
